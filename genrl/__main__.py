from genrl.cli import main

raise SystemExit(main())
