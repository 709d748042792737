"""distr: placeholder for the Python core of issue 7, which replaces this file.

Until then it stands in for the single-file client python/distr.py when that file is beside this
package: a package directory shadows a module of the same name on the same path entry.
"""
import os as _os

_legacy = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "distr.py")
if _os.path.isfile(_legacy):
    with open(_legacy) as _file:
        exec(compile(_file.read(), _legacy, "exec"))
