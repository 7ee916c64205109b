from segzero.cli import main

main()
