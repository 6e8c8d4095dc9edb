"""What every stage shares: typed YAML configs (``schema``), the registry of the seams, the JSON
records that cross stage boundaries, progress bars, device and dtype (``placement``), and the
defaults and file names that several stages must agree on (``defaults``, ``files``)."""
