# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one error base and the one way a module turns a core call into a result.

Every core error derives from :class:`NlbError`; it carries the message meant
for a human and, optionally, a result dict (what was done before it failed).
``run_module`` is the whole ``main()`` body of every module: it maps errors to
``fail_json`` and the result's ``warnings`` to ``module.warn``. Nothing here
imports Ansible: the scheduled backup job uses the same errors on a host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class NlbError(Exception):
    """An operation of the collection cannot be done or failed; ``result`` says what state things are in."""

    def __init__(self, msg, result=None):
        super(NlbError, self).__init__(msg)
        self.result = dict(result or {})


def _warn_all(module, details):
    for warning in details.pop("warnings", None) or []:
        module.warn(warning)


def run_module(module, call):
    """Run ``call()`` (returns the result dict) and exit the module with it.

    NlbError and OSError become ``fail_json`` with the error's result dict;
    a result with ``failed: true`` (e.g. a backup set that is incomplete)
    fails the task with the whole result; ``warnings`` become module warnings.
    """
    try:
        result = dict(call())
    except NlbError as exc:
        details = dict(exc.result)
        _warn_all(module, details)
        details.pop("msg", None)
        module.fail_json(msg=str(exc), **details)
    except OSError as exc:
        module.fail_json(msg="%s" % exc)
    _warn_all(module, result)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)
