"""The checkpoint format of ``case-saliency train``, shared by the trainer (which writes it) and the
model loader (which reads it), so that neither imports the other."""

CHECKPOINT_FORMAT = "case-saliency-checkpoint"
