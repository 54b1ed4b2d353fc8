"""``cxr-fast adapt``: a run adapted to one site from the site's unlabelled films."""
