"""The one proxy in front of every study: nginx and certbot (docker-compose.proxy.yml).

Its configuration is rendered here from the settings files (pure functions: `render` is tested
without Docker) into STUDIES_DIR/.proxy, which both containers mount read-only. Adding or changing
a study re-renders it and reloads nginx, which keeps open connections. Studies reached by address
get ports from STUDY_PORTS, which Docker publishes when it makes the proxy's container."""
import os
import re
import shutil
import subprocess
import tempfile

from . import compose as compose_module
from . import network
from .console import StackError, info, step
from .envfile import REPO_ROOT

TEMPLATES = os.path.join(REPO_ROOT, "nginx")
# Inside the container the server's HTTPS_PORT is 8443; a study's own port keeps its number.
MAIN_HTTPS_PORT = 8443


def _template(name):
    with open(os.path.join(TEMPLATES, name), encoding="utf-8") as handle:
        return handle.read()


def _fill(text, **values):
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    return text


def container_port(server, study):
    return MAIN_HTTPS_PORT if study.https_port == server.https_port else study.https_port


def _admin_allow_geo(study):
    entries = [entry.strip() for entry in study.get("ADMIN_ALLOW_IPS").split(",") if entry.strip()]
    if not entries:
        return "default 1;"
    return " ".join(["default 0;", *(f"{entry} 1;" for entry in entries)])


def _host_map(server, study):
    """The entries of the study's map from "client-address Host" to the Host oTree sees (see
    study-server.conf.template): the study's name and public port, or "" (refused)."""
    public, inside = study.https_port, container_port(server, study)
    suffix = "" if public == 443 else f":{public}"
    if study.domain:
        name_pattern, seen = re.escape(study.domain), study.domain + suffix
    else:
        # The address the participant used (the server's addresses are not known inside Docker).
        capture = "address_" + study.name.replace("-", "_")
        name_pattern = rf"(?<{capture}>[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+|\[[0-9a-f:.]+\]|localhost)"
        seen = f"${capture}{suffix}"
    entries = [f'    "~*^[^ ]+ {name_pattern}(:{public})?$" "{seen}";']
    if inside != public:
        entries.append(f'    "~*^127\\.0\\.0\\.1 {name_pattern}:{inside}$" "{seen}";')
    return "\n".join(entries)


def maintenance_page():
    """nginx/maintenance.html as the body of a `return` (study-server.conf.template), which any
    method gets, unlike a static file. The page may hold no "$": nginx would read a variable."""
    page = _template("maintenance.html")
    if "$" in page:
        raise StackError("nginx/maintenance.html holds a '$', which nginx would read as a variable; remove it.")
    return 'return 503 "' + page.replace("\\", "\\\\").replace('"', '\\"') + '";\n'


def _study_server(server, study, address, default_ports):
    port = container_port(server, study)
    by_address = not study.domain
    is_default = by_address and port not in default_ports
    if is_default:
        default_ports.add(port)
    host_check = ("    # Reached by address: any other Host name gets no answer.\n"
                  "    if ($address_host = 0) {\n        return 444;\n    }" if by_address else "")
    return _fill(_template("study-server.conf.template"),
                 study=study.name, id=study.name.replace("-", "_"), listen=port,
                 default_server=" default_server" if is_default else "",
                 server_name=study.domain or "_", otree_address=address,
                 auth_level=study.get("OTREE_AUTH_LEVEL"), max_body_size=study.get("MAX_BODY_SIZE"),
                 login_rate_limit=study.get("LOGIN_RATE_LIMIT"), login_rate_burst=study.get("LOGIN_RATE_BURST"),
                 admin_allow_geo=_admin_allow_geo(study), host_check=host_check,
                 host_map=_host_map(server, study))


def render(settings, addresses):
    """{file name: content} of the proxy's configuration for these settings, with each study's
    oTree at its address ({study name: address}, stack/network.py)."""
    server = settings.server
    default_ports = set()
    blocks = [_study_server(server, study, addresses[study.name], default_ports) for study in settings.studies]
    # A port with no study reached by address refuses unknown names during the TLS handshake;
    # so do the STUDY_PORTS no study uses yet.
    refusing = [f"server {{\n    listen {port} ssl default_server;\n    ssl_reject_handshake on;\n    return 444;\n}}"
                for port in sorted({MAIN_HTTPS_PORT, *server.study_ports} - default_ports)]
    http_hosts = [f'    "{study.domain}" 1;' for study in settings.studies if study.domain]
    if any(not study.domain for study in settings.studies):
        http_hosts += ["    ~^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$ 1;", "    ~^\\[[0-9a-fA-F:.]+\\]$ 1;",
                       "    localhost 1;"]
    files = {
        "proxy.conf": _fill(_template("proxy.conf.template"), http_hosts="\n".join(http_hosts),
                            https_port_suffix="" if server.https_port == 443 else f":{server.https_port}",
                            default_servers="\n\n".join(refusing)),
        "studies.conf": "\n".join(blocks),
        "maintenance-page.conf": maintenance_page(),
        "letsencrypt.list": "".join(f"{study.name} {study.domain}\n" for study in settings.studies
                                    if letsencrypt_wanted(study)),
    }
    headers = _template(os.path.join("snippets", "security-headers.conf.template"))
    for study in settings.studies:
        files[f"studies/{study.name}/name"] = (study.domain or "localhost") + "\n"
        files[f"studies/{study.name}/headers.conf"] = _fill(headers, hsts_max_age=study.get("HSTS_MAX_AGE"))
    return files


def letsencrypt_wanted(study):
    return bool(study.domain and study.server.values["LETSENCRYPT_EMAIL"] and not study.get("TLS_CERT_FILE"))


def write(settings):
    """Write the rendered files into STUDIES_DIR/.proxy, each whole (a reload never reads half a
    file), and drop what is no longer rendered (a removed study's folder). Returns True when
    anything changed."""
    directory = settings.server.proxy_dir
    files = render(settings, {study.name: network.ensure(study) for study in settings.studies})
    changed = False
    for name, content in files.items():
        path = os.path.join(directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path, encoding="utf-8") as handle:
                if handle.read() == content:
                    continue
        except FileNotFoundError:
            pass
        handle, partial = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".partial-")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(content)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
        changed = True
    studies_dir = os.path.join(directory, "studies")
    for name in os.listdir(studies_dir) if os.path.isdir(studies_dir) else []:
        if f"studies/{name}/name" not in files:
            shutil.rmtree(os.path.join(studies_dir, name))
            changed = True
    for name in os.listdir(directory):
        if os.path.isfile(os.path.join(directory, name)) and name not in files:
            os.remove(os.path.join(directory, name))
    return changed


def compose(server):
    return compose_module.for_proxy(server)


def _nginx(server):
    return compose(server).container("nginx")


def connect(settings):
    """Join nginx to every study's network (after the proxy was made or recreated)."""
    container = _nginx(settings.server)
    if not container:
        return
    joined = subprocess.run(["docker", "inspect", "--format", "{{range $name, $_ := .NetworkSettings.Networks}}"
                             "{{$name}} {{end}}", container], capture_output=True, text=True).stdout.split()
    for study in settings.studies:
        network.ensure(study)
        if study.network not in joined:
            subprocess.run(["docker", "network", "connect", study.network, container], check=True)


def reload(server):
    """Check the rendered configuration, then reload nginx: open connections finish on the old
    workers. A configuration nginx refuses is reported and the running one stays."""
    proxy = compose(server)
    if not proxy.running("nginx"):
        return
    tested = proxy.run("exec", "-T", "nginx", "nginx-entrypoint", "nginx", "-t", "-q", capture=True, check=False)
    if tested.returncode:
        raise StackError("nginx refused the new configuration (its message is above), so it keeps serving the "
                         "previous one. Check the study settings named there, then run `invoke up` again.")
    proxy.run("exec", "-T", "nginx", "nginx-entrypoint", "nginx", "-s", "reload", capture=True)


# Run in the proxy's own image (never a study's, whose code could do anything as root there) on
# the tar stream of a study's static folder: unpacked beside the live folder, then swapped in by
# rename, so nginx never serves a half-copied set. GNU tar refuses names with ".." and makes links
# only after every file; then every entry that is not a file or folder goes, so no link leads
# nginx to another study's files or the proxy's keys.
_UNPACK_STATIC = """set -eu
name=$1
new=/out/.$name.new
old=/out/.$name.old
rm -rf "$new" "$old"
mkdir "$new"
tar -x -C "$new" --no-same-owner --no-same-permissions
find "$new" ! -type f ! -type d -exec rm -f {} +
chmod -R u=rwX,go=rX "$new"
if [ -d "/out/$name" ]; then mv "/out/$name" "$old"; fi
mv "$new" "/out/$name"
rm -rf "$old"
"""


def publish_static(study):
    """Copy the study's static files out of its oTree image into its folder of the proxy's static
    volume without running anything of that image: `docker create` and `docker cp` read its files,
    and the proxy's image unpacks them."""
    image = f"otree-stack/otree:{study.project}"
    volume = f"{study.server.name}_static"
    failed = f"Copying {study.name}'s static files to the proxy failed (see above). Run `invoke up` again."
    subprocess.run(["docker", "volume", "create", "--label", f"com.docker.compose.project={study.server.name}",
                    "--label", "com.docker.compose.volume=static", volume], check=True, stdout=subprocess.DEVNULL)
    created = subprocess.run(["docker", "create", "--network", "none", image], capture_output=True, text=True)
    if created.returncode:
        raise StackError(f"{created.stderr.strip()}\n{failed}")
    container = created.stdout.strip()
    try:
        copy = subprocess.Popen(["docker", "cp", f"{container}:/srv/static/.", "-"], stdout=subprocess.PIPE)
        # Root for folders an older stack left as root's, but with no capability beyond reading
        # and writing any file of the volume, and no network.
        unpacked = subprocess.run(["docker", "run", "--rm", "-i", "--network", "none", "--user", "root",
                                   "--cap-drop", "ALL", "--cap-add", "DAC_OVERRIDE", "--security-opt",
                                   "no-new-privileges", "--read-only", "-v", f"{volume}:/out", "--entrypoint", "sh",
                                   f"otree-stack/nginx:{study.server.name}", "-c", _UNPACK_STATIC, "unpack",
                                   study.name], stdin=copy.stdout)
        copy.stdout.close()
        if copy.wait() or unpacked.returncode:
            raise StackError(failed)
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True)


def up(settings, rebuild=False, pull=False):
    """Render, build and start the proxy, join it to every study, and reload it."""
    changed = write(settings)
    step("Building the proxy's images (nginx, certbot)")
    compose(settings.server).build(no_cache=pull)
    step("Starting the proxy")
    _start(settings, changed, rebuild=rebuild)


def _start(settings, changed, rebuild=False):
    """Bring the proxy to the written configuration: recreated only when its image or the
    server's settings changed, otherwise reloaded without dropping anyone."""
    proxy = compose(settings.server)
    was_running = proxy.running("nginx")
    if was_running and not rebuild and not _sees_written_configuration(settings.server):
        # The folder was replaced (say, the stack re-cloned in place) while nginx ran: its mount
        # still shows the old one, which a reload cannot change.
        info("nginx does not see the configuration just written (its folder was replaced); recreating it.")
        rebuild, changed = True, False
    proxy.up(recreate=rebuild)
    connect(settings)
    if was_running and changed:
        reload(settings.server)


def _sees_written_configuration(server):
    with open(os.path.join(server.proxy_dir, "proxy.conf"), encoding="utf-8") as handle:
        written = handle.read()
    seen = compose(server).run("exec", "-T", "nginx", "cat", "/etc/nginx/edge/proxy.conf", capture=True, check=False)
    return seen.returncode == 0 and seen.stdout == written


def remove_study(settings, study):
    """Take a removed study out of the proxy: its server block, port, network and static files."""
    _start(settings, write(settings))
    container = _nginx(settings.server)
    if container:
        subprocess.run(["docker", "network", "disconnect", study.network, container], capture_output=True)
    subprocess.run(["docker", "network", "rm", study.network], capture_output=True)
    volume = f"{settings.server.name}_static"
    subprocess.run(["docker", "run", "--rm", "--user", "root", "--network", "none", "-v", f"{volume}:/out",
                    "--entrypoint", "rm", f"otree-stack/nginx:{settings.server.name}", "-rf", f"/out/{study.name}"],
                   capture_output=True)
    info(f"The proxy no longer serves {study.name}.")
