"""egin-tf: EGIN (Light-weight End-to-End Graph Interest Network) in TF2 / Keras.

Importing ``egin_tf`` or ``egin_tf.layers`` never changes the process's Keras: the
layers subclass whatever ``tf.keras`` is (Keras 3, or Keras 2 from tf-keras). The
trainer's packages (`egin_tf.models`, `egin_tf.eges`, `egin_tf.serve`,
`egin_tf.train`, `egin_tf.cli`) need Keras 2, because tensorflow-recommenders
0.7.7 does: importing one binds ``tf.keras`` to tf-keras if nothing used it yet,
and otherwise raises an ImportError that names the package
(`data_pipeline.tf_env.ensure_legacy_keras`).
"""

__version__ = "0.1.0"
