from geo_lead.cli import main

raise SystemExit(main())
