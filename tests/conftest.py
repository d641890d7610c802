import os

from hypothesis import HealthCheck, settings

pytest_plugins = [
    "tests.fixtures.sshd",
    "tests.fixtures.sandbox",
    "tests.fixtures.receivers",
    "tests.fixtures.slurm",
    "tests.fixtures.postgres",
]

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
