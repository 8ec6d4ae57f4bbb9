"""The models a service hosts: which weights files it has (``repository``), each loaded
version with what it is served with (``served``), and the registry that loads, evicts and
reloads them (``registry``)."""
