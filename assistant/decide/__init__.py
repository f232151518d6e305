"""`arena decide`: documents (+ optional Q/A) to a verdict, as cached, resumable stages."""
