"""Offline stand-in for ansible-test's get-pip bootstrap script.

ansible-test downloads get-pip from a CI file host that is unreachable on
air-gapped machines. This script does the same job with the standard library:
ensurepip, then ``pip install`` of the requested packages. pip runs in the
ORIGINAL environment because ensurepip sets PIP_CONFIG_FILE=/dev/null, which
would hide the machine's package mirror and CA settings.
"""
import os
import subprocess
import sys

DROPPED = ("--no-setuptools", "--no-wheel")

env = dict(os.environ)
env.pop("GET_PIP", None)
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"], env=env)
args = [arg for arg in sys.argv[1:] if arg not in DROPPED]
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args, env=env)
