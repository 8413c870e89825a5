"""The command-line programs (posediff-train, -eval, -results, -bench, -export, -generate):
each a `main()` over the ROS-free core. The core and runtime/ never import from here."""
