# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Docker Engine connection options shared by every module that talks to the Engine.
    DOCUMENTATION = r'''
options:
  docker_host:
    description:
      - The Docker Engine to talk to, as a URL (V(unix:///var/run/docker.sock), V(tcp://host:2376)).
      - If not set, the value of the E(DOCKER_HOST) environment variable is used, then V(unix:///var/run/docker.sock).
      - Modules read volume data directly on the host only when the engine is local (a unix socket);
        with a remote engine they go through the Engine API.
    type: str
    aliases: [docker_url]
  tls:
    description:
      - Use TLS to talk to the engine. Implied by O(validate_certs=true).
      - If not set, E(DOCKER_TLS) is used.
    type: bool
  validate_certs:
    description:
      - Use TLS and verify the engine's certificate against O(ca_path).
      - If not set, E(DOCKER_TLS_VERIFY) is used.
    type: bool
    aliases: [tls_verify]
  ca_path:
    description:
      - CA certificate to verify the engine with. Defaults to C(ca.pem) in E(DOCKER_CERT_PATH) when TLS is on.
    type: path
    aliases: [ca_cert, tls_ca_cert]
  client_cert:
    description:
      - Client certificate for TLS. Defaults to C(cert.pem) in E(DOCKER_CERT_PATH) when TLS is on.
    type: path
    aliases: [tls_client_cert, cert_path]
  client_key:
    description:
      - Client key for TLS. Defaults to C(key.pem) in E(DOCKER_CERT_PATH) when TLS is on.
    type: path
    aliases: [tls_client_key, key_path]
  api_version:
    description:
      - Docker API version to use; V(auto) (the default) negotiates with the engine.
      - If not set, E(DOCKER_API_VERSION) is used.
    type: str
    aliases: [docker_api_version]
  timeout:
    description:
      - Seconds to wait for an answer from the engine. Defaults to 60, or E(DOCKER_TIMEOUT).
    type: int
requirements:
  - The Docker SDK for Python, 5.0.3 (Debian 12's C(python3-docker)) or newer, on the managed host.
notes:
  - All options of this fragment can be set once for the whole collection with
    C(module_defaults) and the action group C(group/holdfast.volumes.docker).
'''
