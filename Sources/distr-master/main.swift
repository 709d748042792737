import DistrCore
import Foundation

exit(MasterCommand.main(Array(CommandLine.arguments.dropFirst())))
