"""One writer per output folder: cv and crop refuse a folder another process is writing."""

import os
import signal
import subprocess
import sys
import time

import pytest

from maskcls.errors import UserError
from maskcls.locks import exclusive_use, lock_file

HOLD = """import sys, time
from maskcls.locks import exclusive_use
with exclusive_use(sys.argv[1], "cv"):
    time.sleep(60)
"""


def test_a_second_writer_is_refused_with_the_holder_and_kill_9_releases_the_folder(tmp_path):
    folder = tmp_path / "runs/x-cv3"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)])
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (lock_file(folder).exists() and lock_file(folder).read_text()):
            time.sleep(0.05)
        with pytest.raises(UserError) as refused, exclusive_use(folder, "cv"):
            pass
        since = lock_file(folder).read_text().split("since ")[1]
        assert str(refused.value) == (
            f"{folder} is in use by maskcls cv (pid {holder.pid}, since {since}; wait for it to finish "
            "(or stop it), then run this again"
        )
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with exclusive_use(folder, "cv"):  # the kernel dropped the dead holder's lock
        assert lock_file(folder).read_text().startswith(f"maskcls cv (pid {os.getpid()}")
    assert lock_file(folder).read_text() == ""


def test_cv_and_crop_refuse_a_folder_in_use(synth_small, tmp_path):
    from maskcls.experiments.cv import cross_validate
    from maskcls.faces.crop import CropOptions, crop_dataset
    from tests.helpers import tiny_config as cv_config

    config = cv_config(synth_small, tmp_path, "name=busy")
    group = tmp_path / "runs/busy-cv3"
    with exclusive_use(group, "cv"), pytest.raises(UserError, match=f"{group} is in use by maskcls cv"):
        cross_validate(config, runs_dir=tmp_path / "runs")
    assert not group.exists()
    out = tmp_path / "faces"
    with exclusive_use(out, "crop"), pytest.raises(UserError, match=f"{out} is in use by maskcls crop"):
        crop_dataset(synth_small, out, CropOptions(detector="fixed"))
    assert not out.exists()
