@preconcurrency import Glibc
import DistrCore

exit(WorkerCommand.main(Array(CommandLine.arguments.dropFirst())))
