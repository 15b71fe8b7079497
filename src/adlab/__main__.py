from adlab.cli import main

raise SystemExit(main())
