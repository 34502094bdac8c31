from launch.actions import Action


class Node(Action):
    def __init__(self, *, executable, package=None, name=None, namespace=None, exec_name=None, parameters=None,
                 remappings=None, ros_arguments=None, arguments=None, output="log", **kwargs):
        self.package = package
        self.executable = executable
        self.node_name = name
        self.node_namespace = namespace
        self.parameters = list(parameters or [])
        self.remappings = list(remappings or [])
        self.arguments = list(arguments or [])
        self.ros_arguments = list(ros_arguments or [])
        self.output = output
        self.kwargs = kwargs
