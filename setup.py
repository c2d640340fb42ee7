"""Everything about the package is in pyproject.toml; this file only ships kit-quiet.pth.

A .pth file runs at every interpreter start of the environment it is in, so the `xtuner chat`,
`xtuner convert` and `xtuner train` that a participant types drop the same known-noise log lines as
kit's own processes (kit/quiet.py). pyproject.toml cannot place a file at site-packages' top level.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "kit-quiet.pth"


class build_py_with_pth(build_py):
    def _pth_target(self) -> Path:
        # An editable install (PEP 660) links packages instead of building them; its wheel's contents
        # are what `install` writes (setuptools' editable_wheel points install_lib at that wheel).
        if self.editable_mode:
            return Path(self.get_finalized_command("install").install_lib, PTH)
        return Path(self.build_lib, PTH)

    def run(self):
        super().run()
        self.mkpath(str(self._pth_target().parent))
        self.copy_file(PTH, str(self._pth_target()), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        return [*super().get_outputs(include_bytecode), str(self._pth_target())]


setup(cmdclass={"build_py": build_py_with_pth})
