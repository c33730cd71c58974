from tuneforge.cli.app import main

main()
