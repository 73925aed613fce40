from maskcls.cli.app import main

main()
