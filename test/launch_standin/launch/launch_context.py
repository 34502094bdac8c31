class LaunchContext:
    def __init__(self, argv=None):
        self.launch_configurations: dict[str, str] = {}
        self.environment: dict[str, str] = {}
        self.argv = list(argv or [])
