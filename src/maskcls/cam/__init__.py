"""Class activation maps: where each head of a trained model looks (Grad-CAM), drawn over the
photos, gathered into contact sheets and the report, and measured against the synthetic set's
face boxes."""
