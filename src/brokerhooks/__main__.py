from brokerhooks.cli import main

main()
