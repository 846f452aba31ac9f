"""The local runner: a ``PipelineJob`` run step by step on this machine, with its status file."""
