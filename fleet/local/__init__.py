"""The local fleet: runner hosts on this machine's Docker engine (engine and images, the
Docker backend, the fleet model, ``serve``, provisioning and validation drivers). Imports
``fleet.core``, never ``fleet.aws``."""
