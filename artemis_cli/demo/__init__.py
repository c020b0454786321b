"""`artemis demo`: the whole pipeline on the sample data with tiny random models, in minutes on a CPU."""

from artemis_cli.demo.results import DemoResult, StepRecord
from artemis_cli.demo.runner import run_demo
from artemis_cli.demo.steps import STEPS
from artemis_cli.demo.workspace import REAL_COMMANDS, DemoOptions, Workspace, demo_commands

__all__ = ["REAL_COMMANDS", "STEPS", "DemoOptions", "DemoResult", "StepRecord", "Workspace", "demo_commands",
           "run_demo"]
