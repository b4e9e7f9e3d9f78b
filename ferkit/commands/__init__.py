"""The commands behind ``ferkit <command>``: each takes a config, a checkpoint or a module and never imports the
command-line router (:mod:`ferkit.cli` imports them)."""
