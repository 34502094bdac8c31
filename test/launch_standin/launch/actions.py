class Action:
    def execute(self, context):
        return None


class DeclareLaunchArgument(Action):
    def __init__(self, name, *, default_value=None, description="no description given", choices=None, **kwargs):
        self.name = name
        self.default_value = default_value
        self.description = description
        self.choices = choices

    def execute(self, context):
        if self.name not in context.launch_configurations:
            if self.default_value is None:
                raise RuntimeError(f"Required launch argument '{self.name}' was not provided")
            context.launch_configurations[self.name] = str(self.default_value)
        value = context.launch_configurations[self.name]
        if self.choices is not None and value not in self.choices:
            raise RuntimeError(f"Argument '{self.name}' provided value '{value}' is not valid: {self.choices}")
        return None


class SetEnvironmentVariable(Action):
    def __init__(self, name, value):
        self.name = name
        self.value = value

    def execute(self, context):
        context.environment[str(self.name)] = str(self.value)
        return None


class OpaqueFunction(Action):
    def __init__(self, *, function, args=None, kwargs=None):
        self.function = function
        self.args = list(args or [])
        self.kwargs = dict(kwargs or {})

    def execute(self, context):
        return self.function(context, *self.args, **self.kwargs)
