from propagate.cli import main

main()
