"""What runs after production: drift against the training data, shadow agreement between champion
and challenger, realized performance once labels arrive, and the data diff between versions."""
