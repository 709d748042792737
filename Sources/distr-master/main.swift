@preconcurrency import Glibc
import DistrCore

exit(MasterCommand.main(Array(CommandLine.arguments.dropFirst())))
