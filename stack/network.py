"""The network between a study's oTree and the proxy, and oTree's fixed address on it.

Made here, not by either Compose project, so that stopping the study or recreating the proxy leaves
it in place. It is internal: Docker publishes nginx's ports on its one network with a way out, and
joining a network with a way out could move them there, refusing every connection for a moment.

oTree has a fixed address on it, the subnet's last one, so that nginx can keep its connections to
oTree open: nginx 1.26 (Debian's) keeps connections only to an `upstream` group, and resolves a
group's names once, at start, so a name would keep the proxy from starting while a study is
stopped; an address does not. Docker picks a free subnet, the network is made again with it, and
every other member gets its address from the subnet's lower half."""
import ipaddress
import subprocess

from .console import StackError, step

INSPECT = "{{.Internal}} {{range .IPAM.Config}}{{.Subnet}} {{.IPRange}}{{end}}"


def otree_address(subnet):
    """oTree's address on a network with this subnet: its last usable one."""
    return str(ipaddress.ip_network(subnet).broadcast_address - 1)


def dynamic_range(subnet):
    """Where Docker picks the other members' addresses: the lower half, far from oTree's."""
    network = ipaddress.ip_network(subnet)
    if network.version != 4 or network.prefixlen > 28:
        raise StackError(f"Docker gave the proxy's network the subnet {subnet}; the stack needs an IPv4 subnet of "
                         "at least 16 addresses. Check default-address-pools in /etc/docker/daemon.json.")
    return str(next(network.subnets(prefixlen_diff=1)))


def ensure(study):
    """oTree's address on the study's network, made (or made again, once) first where needed."""
    found = _inspect(study.network)
    if found is None:
        _create(study)
    elif found[0] != "true" or len(found) < 3:
        _make_again(study)
    return otree_address(_inspect(study.network)[1])


def _inspect(name):
    """[internal, subnet, ip range] as far as set, or None when there is no such network."""
    found = subprocess.run(["docker", "network", "inspect", "--format", INSPECT, name], capture_output=True, text=True)
    return None if found.returncode else found.stdout.split()


def _docker(*args):
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if result.returncode:
        raise StackError(f"`docker {' '.join(args)}` failed: {result.stderr.strip()}\nRun `invoke up` again; if "
                         "it fails the same way, `docker network ls` shows the networks in the way.")
    return result.stdout


def _create(study):
    create = ["network", "create", "--internal", "--label", f"org.otree-stack.study={study.project}"]
    _docker(*create, study.network)
    subnet = _inspect(study.network)[1]
    _docker("network", "rm", study.network)
    _docker(*create, "--subnet", subnet, "--ip-range", dynamic_range(subnet), study.network)


def _make_again(study):
    """A network made by an older stack (not internal, or with no fixed address for oTree) is made
    again and its containers joined back, oTree at its address: once, for a moment, at `invoke up`."""
    step(f"Study {study.name}: making its network to the proxy again, internal and with a fixed address for "
         "oTree (once; connections pause for a moment)")
    members = _docker("network", "inspect", "--format", "{{range $id, $c := .Containers}}{{$c.Name}} {{end}}",
                      study.network).split()
    for member in members:
        _docker("network", "disconnect", "--force", study.network, member)
    _docker("network", "rm", study.network)
    _create(study)
    address = otree_address(_inspect(study.network)[1])
    for member in members:
        fixed = ["--ip", address] if member.startswith(f"{study.project}-otree-") else []
        _docker("network", "connect", *fixed, study.network, member)
