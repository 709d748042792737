import DistrCore
import Foundation

exit(WorkerCommand.main(Array(CommandLine.arguments.dropFirst())))
