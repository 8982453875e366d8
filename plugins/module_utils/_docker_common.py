# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker Engine access shared by every module.

One argument spec for the connection options (documented once in the
holdfast.volumes.docker doc fragment), one function that turns them into a
low-level docker.APIClient, and clear errors for a missing SDK or an engine
that does not answer. Works with the docker SDK 5.0.3 (Debian 12's
python3-docker) up to 7.x: only APIClient calls present in all of them are used.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import sys
import traceback

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError

try:
    import docker
    from docker.errors import APIError, DockerException, NotFound
    HAS_DOCKER_SDK = True
    DOCKER_SDK_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by the missing-SDK test
    HAS_DOCKER_SDK = False
    DOCKER_SDK_IMPORT_ERROR = traceback.format_exc()

    class APIError(Exception):  # type: ignore[no-redef]
        pass

    class DockerException(Exception):  # type: ignore[no-redef]
        pass

    class NotFound(APIError):  # type: ignore[no-redef]
        pass


DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock'
DEFAULT_TIMEOUT = 60

SDK_MISSING_MSG = (
    "The Docker SDK for Python is not installed for the interpreter that runs this module (%s). "
    "Install it on the managed host: 'apt-get install python3-docker' on Debian/Ubuntu, "
    "or 'pip install docker' into that interpreter, or point ansible_python_interpreter at a "
    "Python that has it. The holdfast.volumes.volumes role installs it for you."
)


def docker_argument_spec():
    """The connection options every Docker-facing module accepts. (Imported here: the helpers also run on hosts
    without Ansible, under the backup role's scheduled runner.)"""
    from ansible.module_utils.basic import env_fallback
    return dict(
        docker_host=dict(type='str', aliases=['docker_url'],
                         fallback=(env_fallback, ['DOCKER_HOST'])),
        tls=dict(type='bool', fallback=(env_fallback, ['DOCKER_TLS'])),
        validate_certs=dict(type='bool', aliases=['tls_verify'],
                            fallback=(env_fallback, ['DOCKER_TLS_VERIFY'])),
        ca_path=dict(type='path', aliases=['ca_cert', 'tls_ca_cert']),
        client_cert=dict(type='path', aliases=['tls_client_cert', 'cert_path']),
        client_key=dict(type='path', aliases=['tls_client_key', 'key_path']),
        api_version=dict(type='str', aliases=['docker_api_version'],
                         fallback=(env_fallback, ['DOCKER_API_VERSION'])),
        timeout=dict(type='int', fallback=(env_fallback, ['DOCKER_TIMEOUT'])),
    )


def _cert_dir_default(name):
    cert_path = os.environ.get('DOCKER_CERT_PATH')
    if cert_path:
        candidate = os.path.join(cert_path, name)
        if os.path.exists(candidate):
            return candidate
    return None


def connection_params(params):
    """Normalise the connection options (pure: no I/O besides env lookups)."""
    host = params.get('docker_host') or DEFAULT_DOCKER_HOST
    timeout = params.get('timeout')
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    if timeout <= 0:
        raise HoldfastError("timeout must be a positive number of seconds, got %s." % timeout)
    validate = bool(params.get('validate_certs'))
    tls = bool(params.get('tls')) or validate
    ca = params.get('ca_path') or (_cert_dir_default('ca.pem') if tls else None)
    cert = params.get('client_cert') or (_cert_dir_default('cert.pem') if tls else None)
    key = params.get('client_key') or (_cert_dir_default('key.pem') if tls else None)
    if bool(cert) != bool(key):
        raise HoldfastError("client_cert and client_key must be given together (or neither).")
    return dict(host=host, timeout=timeout, tls=tls, validate_certs=validate,
                ca_path=ca, client_cert=cert, client_key=key,
                api_version=params.get('api_version') or 'auto')


LOCAL_SOCKETS = ('/var/run/docker.sock', '/run/docker.sock')
# Docker's own rule for volume names (daemon/names): an alphanumeric, then alphanumerics, '_', '.' or '-'.
VOLUME_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]+$')


def is_local_engine(docker_host):
    """True when docker_host is this host's own engine socket, so the volume paths it reports are this host's.

    Anything else (TCP, SSH, another socket, which may well be forwarded from another machine) is treated as a
    remote engine: its volumes are reached through the Engine API only, never by a host path."""
    host = docker_host or DEFAULT_DOCKER_HOST
    if host.startswith('unix://'):
        host = host[len('unix://'):]
    if not host.startswith('/'):
        return False
    local = set(os.path.realpath(p) for p in LOCAL_SOCKETS)
    return os.path.normpath(host) in LOCAL_SOCKETS or os.path.realpath(host) in local


def validate_volume_name(name, what='volume'):
    """Refuse a name that is not a Docker volume name before it reaches an API URL (e.g. '../../containers/json')."""
    if not isinstance(name, str) or not VOLUME_NAME_RE.match(name):
        raise HoldfastError("%s %r is not a valid Docker volume name: use at least two characters, starting with a "
                            "letter or digit, then letters, digits, '_', '.' or '-'." % (what, name))
    return name


def connect(params):
    """Return a docker.APIClient for the connection options, or raise HoldfastError."""
    if not HAS_DOCKER_SDK:
        raise HoldfastError(SDK_MISSING_MSG % sys.executable)
    conn = connection_params(params)
    tls_config = None
    if conn['tls']:
        from docker.tls import TLSConfig
        client_cert = (conn['client_cert'], conn['client_key']) if conn['client_cert'] else None
        try:
            tls_config = TLSConfig(client_cert=client_cert, ca_cert=conn['ca_path'],
                                   verify=conn['validate_certs'])
        except DockerException as exc:
            raise HoldfastError("Invalid TLS settings for the Docker Engine: %s" % exc) from exc
    try:
        client = docker.APIClient(base_url=conn['host'], version=conn['api_version'],
                                  timeout=conn['timeout'], tls=tls_config)
        client.ping()
    except (DockerException, APIError, OSError) as exc:
        raise HoldfastError(
            "Cannot reach the Docker Engine at %s: %s. Check that dockerd is running "
            "('systemctl start docker' or 'dockerd &'), that docker_host (or DOCKER_HOST) points at it, "
            "and that this user may use its socket." % (conn['host'], _short(exc))) from exc
    return client


def _short(exc):
    text = str(exc)
    return text if len(text) < 400 else text[:400] + '...'


def api_error(action, exc):
    """Turn an SDK error during an action into a HoldfastError."""
    explanation = getattr(exc, 'explanation', None) or str(exc)
    if isinstance(explanation, bytes):
        explanation = explanation.decode('utf-8', 'replace')
    return HoldfastError("Docker Engine refused to %s: %s" % (action, explanation))


def list_volumes(client):
    """All volumes of the engine in one call, normalised (labels/options never None)."""
    try:
        data = client.volumes() or {}
    except (DockerException, APIError) as exc:
        raise api_error('list volumes', exc) from exc
    return [normalise_volume(v) for v in (data.get('Volumes') or [])]


def normalise_volume(raw):
    vol = dict(raw)
    vol['Labels'] = dict(raw.get('Labels') or {})
    vol['Options'] = dict(raw.get('Options') or {})
    vol['Driver'] = raw.get('Driver') or 'local'
    return vol


def inspect_volume(client, name):
    """Inspect one volume; None when it does not exist."""
    validate_volume_name(name)
    try:
        return normalise_volume(client.inspect_volume(name))
    except NotFound:
        return None
    except (DockerException, APIError) as exc:
        raise api_error('inspect volume %s' % name, exc) from exc


def create_volume(client, name, driver='local', driver_opts=None, labels=None):
    """Create a volume; returns its normalised inspect data. The one place the collection creates volumes."""
    try:
        created = client.create_volume(name=name, driver=driver, driver_opts=driver_opts or None,
                                       labels=labels or None)
    except (DockerException, APIError) as exc:
        raise api_error('create volume %s' % name, exc) from exc
    return normalise_volume(created)


def available_volume_drivers(client):
    """Volume drivers the engine knows: built-in/legacy ones and enabled managed plugins."""
    drivers = set()
    try:
        info = client.info()
        drivers.update((info.get('Plugins') or {}).get('Volume') or [])
        for plugin in client.plugins() or []:
            caps = ((plugin.get('Config') or {}).get('Interface') or {}).get('Types') or []
            if plugin.get('Enabled') and any('volumedriver' in str(c) for c in caps):
                name = plugin.get('Name', '')
                drivers.add(name)
                if name.endswith(':latest'):
                    drivers.add(name[:-len(':latest')])
    except (DockerException, APIError) as exc:
        raise api_error('list volume drivers', exc) from exc
    return drivers


def container_mounts(client):
    """Every (container, mount) pair of the engine, from one container listing.

    container: dict(name, id, state, running), where running covers paused and restarting containers too.
    """
    try:
        containers = client.containers(all=True)
    except (DockerException, APIError) as exc:
        raise api_error('list containers', exc) from exc
    for c in containers:
        names = c.get('Names') or [c.get('Id', '')[:12]]
        container = dict(name=names[0].lstrip('/'), id=c.get('Id'), state=c.get('State'),
                         running=c.get('State') in ('running', 'paused', 'restarting'))
        for mount in c.get('Mounts') or []:
            yield container, mount


def containers_by_volume(client):
    """Map volume name -> list of {name, id, state, running, destination, read_only} (one call)."""
    usage = {}
    for container, mount in container_mounts(client):
        if mount.get('Type') == 'volume' and mount.get('Name'):
            usage.setdefault(mount['Name'], []).append(dict(
                container, destination=mount.get('Destination'), read_only=not mount.get('RW', True)))
    return usage
