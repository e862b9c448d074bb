"""egin-tf: TensorFlow 2 / Keras trainer for EGIN (end-to-end graph interest network)."""

import setuptools

setuptools.setup(
    name="egin-tf",
    version="0.1.0",
    description=("Light-weight End-to-End Graph Interest Network (EGIN) for CTR "
                 "prediction in e-commerce search, in TensorFlow 2 / Keras"),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["egin_tf", "egin_tf.*",
                                               "data_pipeline", "data_pipeline.*"]),
    install_requires=[
        "tensorflow==2.21.*",
        "tf-keras==2.21.*",
        # TF 2.21 no longer pulls TensorBoard in; Keras' TensorBoard callback needs it.
        "tensorboard==2.21.*",
        "tensorflow-recommenders==0.7.7",
        # TF Serving's request protos (PredictionLog) for the warm-up records.
        "tensorflow-serving-api==2.21.*",
        "numpy",
        "absl-py",
    ],
    extras_require={
        # matplotlib: the tests run the experiment scripts, figures included.
        # ruff and pycodestyle: the lint .ci/run runs before the tests (ruff.toml, setup.cfg).
        # pytest-xdist: the suite runs on every core (pytest.ini); most of a test's time is
        # Python and tracing on one core, so two workers halve the suite on 2 cores.
        "test": ["pytest", "pytest-xdist", "hypothesis", "matplotlib", "ruff",
                 "pycodestyle"],
        # Plots of experiments/ (Figure 3, Figure 4); the library does not need it.
        "experiments": ["matplotlib"],
    },
    entry_points={"console_scripts": ["egin-tf=egin_tf.cli.main:run"]},
)
