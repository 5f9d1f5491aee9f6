# Helpers shared by every rule file.
import json


def settings(section):
    """A params.yaml section as JSON: the one way stages receive settings, and a rerun trigger."""
    return json.dumps(config[section], sort_keys=True)


CHUNKS = [f"{i:03d}" for i in range(int(config["render"]["chunks"]))]


wildcard_constraints:
    chunk=r"\d{3}",
