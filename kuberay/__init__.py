"""Cluster deployment: render the RayService and its infrastructure from the typed config, and deploy it."""
