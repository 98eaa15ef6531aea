"""Static checks of the deployment files: Dockerfiles, compose, nginx, Kubernetes manifests and CI workflow.

No Docker engine runs on the development machines, so nothing here builds or starts a container: the files
are parsed and checked against the Kubernetes schemas, a hand-written KEDA schema, and each other.
"""
