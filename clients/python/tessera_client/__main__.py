import sys

from tessera_client.cli import main

sys.exit(main())
