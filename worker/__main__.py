from worker.ops.cli import main

main()
