#!/usr/bin/env python3
"""The deployment files (deploy/) agree with the repository and the binaries.

No container engine or cluster runs here, so this is what keeps deploy/
honest:
  * every file they name in the repository exists (Dockerfile COPY sources,
    scripts, compose build context, kustomization resources), and the
    Dockerfile copies binaries from where the CMake build puts them;
  * every command line they give recsys-server, recsys-client or
    recsys-trainer, and every --flagfile they ship, is accepted by the built
    binary: flag names (dashes or underscores on a command line, underscores
    only in a flag file) and values, by running the binary with those flags
    and --helpfull;
  * ports agree: probes and HEALTHCHECK reach a port the server listens on,
    Services target declared container ports;
  * paths the server is given (data dir, TLS files, token, model) lie on a
    mounted volume or writable directory;
  * the runtime image installs the Debian package of every shared library
    the binaries load (ldd + dpkg -S);
  * the systemd unit has its hardening, passes `systemd-analyze verify`, and
    scores "OK" in `systemd-analyze security --offline` (when available).

Usage: deploy_consistency_test.py --source DIR --build DIR --server BIN
       --client BIN --trainer BIN [--sanitized]
Exit 0 when consistent, 1 with every problem listed, 77 (skip) without
PyYAML.
"""

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:  # CMake may have found a Python without PyYAML.
    if os.path.exists("/usr/bin/python3") and sys.executable != "/usr/bin/python3" \
            and not os.environ.get("RECSYS_DEPLOY_TEST_REEXEC"):
        os.environ["RECSYS_DEPLOY_TEST_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    print("SKIP: PyYAML is missing (Debian package python3-yaml)")
    sys.exit(77)

BINARIES = ("recsys-server", "recsys-client", "recsys-trainer")
SHELL_OPERATORS = {"&&", "||", ";", "|", "{", "}", "(", ")", "!"}
# Base-image packages every Debian container already has.
BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}


class Checker:
    def __init__(self, args):
        self.source = os.path.abspath(args.source)
        self.build = os.path.abspath(args.build)
        self.bins = {"recsys-server": os.path.abspath(args.server),
                     "recsys-client": os.path.abspath(args.client),
                     "recsys-trainer": os.path.abspath(args.trainer)}
        self.errors = []
        self.checked_commands = 0
        self._flags = {}

    def error(self, where, message):
        self.errors.append(f"{where}: {message}")

    def path(self, *parts):
        return os.path.join(self.source, *parts)

    # -- flags ----------------------------------------------------------------

    def flags(self, binary):
        """Flag names the binary defines, from its --helpfull."""
        if binary not in self._flags:
            out = subprocess.run([self.bins[binary], "--helpfull"],
                                 capture_output=True, text=True, timeout=30)
            names = set(re.findall(r"^\s+--([A-Za-z0-9_]+) \(",
                                   out.stdout + out.stderr, re.M))
            if len(names) < 5:
                raise SystemExit(f"could not read the flags of {binary}")
            self._flags[binary] = names
        return self._flags[binary]

    def run_with(self, binary, args):
        """Parse errors the binary reports for `args` (it exits at
        --helpfull after parsing everything)."""
        out = subprocess.run([self.bins[binary]] + args + ["--helpfull"],
                             capture_output=True, text=True, timeout=30)
        return [l for l in (out.stdout + out.stderr).splitlines()
                if l.startswith("ERROR")]

    def check_command(self, where, binary, args, flagfiles):
        """One command line: `args` follow `binary`."""
        self.checked_commands += 1
        known = self.flags(binary)
        to_run = []
        for a in args:
            if not re.match(r"^--?[A-Za-z]", a):
                to_run.append(a)
                continue
            name = a.lstrip("-").split("=", 1)[0].replace("-", "_")
            if name == "flagfile":
                path = a.split("=", 1)[1] if "=" in a else ""
                base = os.path.basename(path)
                if base not in flagfiles.get(binary, {}):
                    self.error(where, f"{binary} --flagfile={path}: no flag "
                               f"file named {base} for {binary} in deploy/")
                continue
            plain = name[2:] if name.startswith("no") else name
            if name not in known and plain not in known:
                self.error(where, f"{binary} does not accept --{name}")
            to_run.append(a)
        for e in self.run_with(binary, to_run):
            self.error(where, f"{binary} {' '.join(to_run)}: {e}")

    def check_flagfile(self, where, binary, text):
        """Abseil reads flag files verbatim: --name=value per line, exact
        (underscore) names, no quoting."""
        known = self.flags(binary)
        lines = []
        for n, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            m = re.match(r"^--([A-Za-z0-9_-]+)(=(.*))?$", s)
            if not m:
                self.error(f"{where}:{n}", f"not a --flag line: {s!r}")
                continue
            name, value = m.group(1), m.group(3) or ""
            if name not in known and not (name.startswith("no") and name[2:] in known):
                hint = " (flag files need underscores)" if "-" in name else ""
                self.error(f"{where}:{n}", f"{binary} does not accept --{name}{hint}")
            if value[:1] in ("'", '"'):
                self.error(f"{where}:{n}", "flag file values are not unquoted; "
                           "drop the quotes")
            lines.append(s)
        with tempfile.NamedTemporaryFile("w", suffix=".flags", delete=False) as f:
            f.write("\n".join(lines) + "\n")
            tmp = f.name
        try:
            for e in self.run_with(binary, [f"--flagfile={tmp}"]):
                self.error(where, f"{binary} rejects the flag file: {e}")
        finally:
            os.unlink(tmp)
        return parse_flag_values(lines)

    def commands_in(self, argv):
        """(binary, args) for each recsys command in an argv, looking into
        `sh -c` scripts and splitting at shell operators."""
        out = []
        if len(argv) >= 3 and os.path.basename(argv[0]) in ("sh", "bash") \
                and argv[1] == "-c":
            return self.commands_in(shlex.split(argv[2]))
        segment = []
        for tok in argv + [";"]:
            if tok in SHELL_OPERATORS or tok.endswith(";"):
                if tok.endswith(";") and tok != ";":
                    segment.append(tok[:-1])
                for i, t in enumerate(segment):
                    if os.path.basename(t) in BINARIES:
                        out.append((os.path.basename(t), segment[i + 1:]))
                        break
                segment = []
            else:
                segment.append(tok)
        return out

    def check_argv(self, where, argv, flagfiles, need_binary=False):
        cmds = self.commands_in(argv)
        if need_binary and not cmds and any(a.startswith("-") for a in argv):
            self.error(where, f"passes flags but names no recsys binary: {argv}")
        for binary, args in cmds:
            self.check_command(where, binary, args, flagfiles)
        return cmds

    # -- files ----------------------------------------------------------------

    def check_repo_paths(self, where, text):
        """Repository paths mentioned anywhere in a deploy file exist."""
        tops = "|".join(re.escape(d) for d in sorted(os.listdir(self.source))
                        if not d.startswith(".") and d != "build")
        for m in re.finditer(rf"(?<![\w/.-])((?:{tops})/[\w./-]*[\w/])", text):
            p = m.group(1)
            if not os.path.exists(self.path(p)):
                self.error(where, f"names {p}, which is not in the repository")


def parse_flag_values(args):
    """{name: value} with underscores, for --name=value arguments."""
    values = {}
    for a in args:
        m = re.match(r"^--?([A-Za-z0-9_-]+)=(.*)$", a)
        if m:
            values[m.group(1).replace("-", "_")] = m.group(2)
    return values


def port_of(address):
    m = re.search(r":(\d+)$", address or "")
    return int(m.group(1)) if m else None


def under(path, roots):
    path = os.path.normpath(path)
    return any(path == os.path.normpath(r) or
               path.startswith(os.path.normpath(r).rstrip("/") + "/") for r in roots)


def dockerfile_instructions(text):
    """(instruction, arguments) with continuations joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not current and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        if s.endswith("\\"):
            current += s[:-1] + " "
            continue
        current += s
        parts = current.split(None, 1)
        out.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
        current = ""
    return out


def exec_form(arg):
    arg = arg.strip()
    if arg.startswith("["):
        return json.loads(arg)
    return ["sh", "-c", arg]


def check_dockerfile(c, flagfiles):
    where = "deploy/Dockerfile"
    text = open(c.path(where)).read()
    c.check_repo_paths(where, text)
    ins = dockerfile_instructions(text)
    stages = []
    result = {"healthcheck_ports": [], "server_ports": set(), "expose": set(),
              "runtime_packages": set()}
    for op, arg in ins:
        if op == "FROM":
            stages.append(arg)
        elif op in ("COPY", "ADD"):
            toks = shlex.split(arg)
            from_stage = [t for t in toks if t.startswith("--from=")]
            paths = [t for t in toks if not t.startswith("--")]
            for src in paths[:-1]:
                if from_stage:
                    m = re.match(r"^/src/build/release/(.+)$", src)
                    if not m:
                        c.error(where, f"COPY {src}: expected a path in the "
                                "build stage's build/release tree")
                    elif not os.path.exists(os.path.join(c.build, m.group(1))):
                        c.error(where, f"COPY {src}: the CMake build makes no "
                                f"{m.group(1)}")
                elif not os.path.exists(c.path(src)):
                    c.error(where, f"COPY {src}: not in the repository")
        elif op == "RUN":
            for s in re.findall(r"scripts/[\w.-]+\.sh", arg):
                if not os.path.exists(c.path(s)):
                    c.error(where, f"RUN uses {s}, which does not exist")
            if len(stages) > 1 and "apt-get install" in arg:
                for tok in shlex.split(arg.split("apt-get install", 1)[1]):
                    if tok in SHELL_OPERATORS:
                        break
                    if not tok.startswith("-"):
                        result["runtime_packages"].add(tok)
        elif op == "HEALTHCHECK":
            m = re.search(r"\bCMD\b\s*(.*)$", arg)
            argv = exec_form(m.group(1))
            for binary, args in c.check_argv(where + " HEALTHCHECK", argv, flagfiles):
                v = parse_flag_values(args)
                result["healthcheck_ports"].append(port_of(v.get("target")))
        elif op in ("CMD", "ENTRYPOINT"):
            argv = exec_form(arg)
            for binary, args in c.check_argv(f"{where} {op}", argv, flagfiles,
                                             need_binary=True):
                if binary == "recsys-server":
                    v = parse_flag_values(args)
                    result["server_ports"] = {port_of(v.get(k)) for k in
                                              ("listen", "health_listen", "metrics_listen")
                                              if v.get(k)}
        elif op == "EXPOSE":
            result["expose"] = {int(p.split("/")[0]) for p in arg.split()}
    if "scripts/common.sh" not in text:
        c.error(where, "the build stage must install packages and build through "
                "scripts/common.sh, as CI does")
    for p in result["healthcheck_ports"]:
        if p not in result["server_ports"]:
            c.error(where, f"HEALTHCHECK targets port {p}, which the default "
                    f"server command does not listen on ({sorted(result['server_ports'])})")
    if result["expose"] != result["server_ports"]:
        c.error(where, f"EXPOSE {sorted(result['expose'])} differs from the "
                f"server's ports {sorted(result['server_ports'])}")
    ignore = c.path("deploy/Dockerfile.dockerignore")
    if os.path.exists(ignore):
        patterns = [l.strip() for l in open(ignore) if l.strip() and not l.startswith("#")]
        for keep in ("scripts", "server", "CMakeLists.txt"):
            if keep in [p.rstrip("/") for p in patterns]:
                c.error("deploy/Dockerfile.dockerignore", f"excludes {keep}, "
                        "which the build needs")
    return result


def check_runtime_libraries(c, packages):
    """Every shared library the binaries load comes from a package the
    runtime stage installs."""
    if not shutil.which("ldd") or not shutil.which("dpkg"):
        print("note: no ldd/dpkg, runtime library check skipped")
        return
    libs = {}
    for binary, exe in c.bins.items():
        out = subprocess.run(["ldd", exe], capture_output=True, text=True).stdout
        for lib in re.findall(r"=>\s+(/\S+)", out):
            libs.setdefault(lib, set()).add(binary)
    # Merged /usr: dpkg may know a library under /lib or /usr/lib, or only by
    # its real name. One dpkg call for every spelling (it is slow to start).
    spellings = {}
    for lib in libs:
        for p in {lib, os.path.realpath(lib), re.sub(r"^/usr/lib/", "/lib/", lib),
                  re.sub(r"^/lib/", "/usr/lib/", lib)}:
            spellings.setdefault(p, lib)
    r = subprocess.run(["dpkg", "-S"] + sorted(spellings), capture_output=True,
                       text=True)
    owners = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^([^:,\s]+)(?::[\w-]+)?: (/\S+)$", line)
        if m and m.group(2) in spellings:
            owners.setdefault(spellings[m.group(2)], m.group(1))
    needed = {}
    for lib, users in libs.items():
        if lib in owners:
            needed.setdefault(owners[lib], set()).update(users)
    if not needed:
        print("note: dpkg knows none of the libraries, check skipped")
        return
    for pkg, users in sorted(needed.items()):
        if pkg not in packages and pkg not in BASE_PACKAGES:
            c.error("deploy/Dockerfile", f"runtime stage does not install {pkg}, "
                    f"which {', '.join(sorted(users))} needs")


def check_compose(c, flagfiles, docker):
    where = "deploy/docker-compose.yml"
    text = open(c.path(where)).read()
    c.check_repo_paths(where, text)
    doc = yaml.safe_load(text)
    services = doc.get("services", {})
    for name, svc in services.items():
        w = f"{where} services.{name}"
        build = svc.get("build")
        if isinstance(build, dict):
            ctx = os.path.normpath(os.path.join(c.path("deploy"), build.get("context", ".")))
            if not os.path.isdir(ctx):
                c.error(w, f"build context {build.get('context')} does not exist")
            df = os.path.join(ctx, build.get("dockerfile", "Dockerfile"))
            if not os.path.exists(df):
                c.error(w, f"dockerfile {build.get('dockerfile')} does not exist")
        argv = []
        for key in ("entrypoint", "command"):
            v = svc.get(key)
            if isinstance(v, str):
                v = shlex.split(v)
            argv += v or []
        cmds = c.check_argv(w, argv, flagfiles, need_binary=True)
        mounts = [str(v).split(":")[1] for v in svc.get("volumes", []) if ":" in str(v)]
        for binary, args in cmds:
            v = parse_flag_values(args)
            if binary == "recsys-server":
                for key in ("data_dir", "model"):
                    if key in v and not under(v[key], mounts):
                        c.error(w, f"--{key}={v[key]} is not on a volume ({mounts})")
                ports = {port_of(v.get(k)) for k in ("listen", "health_listen")}
                if "healthcheck" not in svc:
                    for p in docker["healthcheck_ports"]:
                        if p not in ports:
                            c.error(w, f"inherits the image HEALTHCHECK on port {p}, "
                                    "but the server does not listen there")
            if binary == "recsys-trainer" and "out" in v and not under(v["out"], mounts):
                c.error(w, f"trainer --out={v['out']} is not on a volume")
        hc = svc.get("healthcheck", {}).get("test")
        if hc:
            c.check_argv(w + " healthcheck", hc[1:] if hc[0] == "CMD" else
                         ["sh", "-c", hc[1]], flagfiles)
        for dep in (svc.get("depends_on") or {}):
            if dep not in services:
                c.error(w, f"depends on unknown service {dep}")


def check_kubernetes(c, flagfiles):
    docs = []
    for f in sorted(glob.glob(c.path("deploy/k8s/*.yaml"))):
        rel = os.path.relpath(f, c.source)
        text = open(f).read()
        c.check_repo_paths(rel, text)
        for d in yaml.safe_load_all(text):
            if d:
                docs.append((rel, d))
    kinds = {d.get("kind") for _, d in docs}
    for need in ("StatefulSet", "Service", "ConfigMap", "Secret"):
        if need not in kinds:
            c.error("deploy/k8s", f"no {need}")
    by_name = {(d.get("kind"), d["metadata"]["name"]): d for _, d in docs
               if d.get("metadata")}
    for rel, d in docs:
        if d.get("kind") == "Kustomization":
            for r in d.get("resources", []):
                if not os.path.exists(os.path.join(os.path.dirname(c.path(rel)), r)):
                    c.error(rel, f"resource {r} does not exist")
    # ConfigMap flag files, by the binary their key names.
    configmap_flags = {}
    for rel, d in docs:
        if d.get("kind") != "ConfigMap":
            continue
        for key, text in (d.get("data") or {}).items():
            binary = key[:-len(".flags")] if key.endswith(".flags") else None
            if binary in BINARIES:
                values = c.check_flagfile(f"{rel} {d['metadata']['name']}/{key}",
                                          binary, text)
                configmap_flags[(d["metadata"]["name"], key)] = (binary, values)
    workloads = [(rel, d) for rel, d in docs
                 if d.get("kind") in ("StatefulSet", "Deployment", "DaemonSet", "Job")]
    for rel, w in workloads:
        spec = w["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        if w.get("kind") == "StatefulSet" and not claims:
            c.error(rel, "StatefulSet without a volumeClaimTemplate for the data")
        for ctr in spec.get("containers", []) + spec.get("initContainers", []):
            where = f"{rel} {w['metadata']['name']}/{ctr['name']}"
            argv = list(ctr.get("command", [])) + list(ctr.get("args", []))
            mounts = {m["mountPath"]: m["name"] for m in ctr.get("volumeMounts", [])}
            for m in ctr.get("volumeMounts", []):
                if m["name"] not in volumes and m["name"] not in claims:
                    c.error(where, f"mounts undefined volume {m['name']}")
            # Flag files reach the container through a ConfigMap volume.
            visible = {b: dict(v) for b, v in flagfiles.items()}
            values = {}
            for path, vol in mounts.items():
                cm = volumes.get(vol, {}).get("configMap")
                if not cm:
                    continue
                if ("ConfigMap", cm["name"]) not in by_name:
                    c.error(where, f"volume {vol} uses unknown ConfigMap {cm['name']}")
                for (cm_name, key), (binary, vals) in configmap_flags.items():
                    if cm_name == cm["name"]:
                        visible.setdefault(binary, {})[key] = vals
                        if any(a.endswith(f"{path}/{key}") for a in argv):
                            values.update(vals)
            for vol in volumes.values():
                sec = vol.get("secret")
                if sec and ("Secret", sec["secretName"]) not in by_name:
                    c.error(where, f"volume uses Secret {sec['secretName']}, "
                            "which deploy/k8s does not define")
            cmds = c.check_argv(where, argv, visible, need_binary=True)
            for binary, args in cmds:
                if binary != "recsys-server":
                    continue
                values.update(parse_flag_values(args))
                for key in ("data_dir", "model", "tls_cert", "tls_key",
                            "tls_client_ca", "token_file", "replica_tls_ca",
                            "replica_tls_cert", "replica_tls_key",
                            "replica_token_file"):
                    if key in values and not under(values[key], mounts):
                        c.error(where, f"--{key}={values[key]} is on no "
                                f"volume mount ({sorted(mounts)})")
                if "data_dir" in values:
                    vol = next((mounts[p] for p in mounts
                                if under(values["data_dir"], [p])), None)
                    if vol not in claims:
                        c.error(where, "the data directory is not on the "
                                "PersistentVolumeClaim")
                listen = {port_of(values.get(k)): k for k in
                          ("listen", "health_listen", "metrics_listen") if values.get(k)}
                declared = {p["containerPort"]: p.get("name") for p in ctr.get("ports", [])}
                for port in listen:
                    if port not in declared:
                        c.error(where, f"listens on {port} but declares no containerPort for it")
                for port in declared:
                    if port not in listen:
                        c.error(where, f"declares containerPort {port}, which nothing listens on")
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    p = ctr.get(probe)
                    if not p:
                        c.error(where, f"no {probe}")
                        continue
                    if "grpc" not in p:
                        c.error(where, f"{probe} is not a native gRPC probe")
                        continue
                    port = p["grpc"]["port"]
                    if listen.get(port) != "health_listen":
                        c.error(where, f"{probe} uses port {port}; the kubelet speaks "
                                "no TLS, so probes must use --health_listen's port")
                res = ctr.get("resources", {})
                if not res.get("requests"):
                    c.error(where, "no resource requests")
            # Services select this pod and target its ports.
            labels = w["spec"]["template"]["metadata"].get("labels", {})
            names = {p.get("name") for p in ctr.get("ports", [])}
            numbers = {p["containerPort"] for p in ctr.get("ports", [])}
            for srel, s in docs:
                if s.get("kind") != "Service":
                    continue
                sel = s["spec"].get("selector", {})
                if not sel or any(labels.get(k) != v for k, v in sel.items()):
                    continue
                for sp in s["spec"].get("ports", []):
                    t = sp.get("targetPort", sp.get("port"))
                    if t not in names and t not in numbers:
                        c.error(srel, f"Service {s['metadata']['name']} targets "
                                f"port {t}, which {ctr['name']} does not declare")
        if w.get("kind") == "StatefulSet":
            svc = w["spec"].get("serviceName")
            if ("Service", svc) not in by_name:
                c.error(rel, f"serviceName {svc} is not a Service here")


def check_systemd(c, flagfiles):
    where = "deploy/systemd/recsys-server.service"
    text = open(c.path(where)).read()
    c.check_repo_paths(where, text)
    settings = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line.strip())
        if m:
            settings.setdefault(m.group(1), []).append(m.group(2))
    for key, want in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                      ("PrivateTmp", "yes"), ("ProtectHome", "yes")):
        if want not in settings.get(key, []):
            c.error(where, f"missing {key}={want}")
    if "yes" not in settings.get("DynamicUser", []) and not settings.get("User"):
        c.error(where, "runs as root: set DynamicUser=yes or User=")
    writable = [p for v in settings.get("ReadWritePaths", []) for p in v.split()]
    writable += ["/var/lib/" + v for v in settings.get("StateDirectory", [])]
    creds = ["/run/credentials/recsys-server.service"] if settings.get("LoadCredential") else []
    for exec_line in settings.get("ExecStart", []):
        argv = shlex.split(exec_line.lstrip("-@+!:"))
        for binary, args in c.check_argv(where, argv, flagfiles, need_binary=True):
            values = parse_flag_values(args)
            for a in args:
                if a.startswith("--flagfile="):
                    values.update(flagfiles.get(binary, {}).get(
                        os.path.basename(a.split("=", 1)[1]), {}))
            if binary == "recsys-server":
                if "data_dir" in values and not under(values["data_dir"], writable):
                    c.error(where, f"--data_dir={values['data_dir']} is not writable "
                            f"under ProtectSystem=strict ({writable})")
                for key in ("tls_cert", "tls_key", "token_file"):
                    if key in values and values[key].startswith("/run/credentials/") \
                            and not under(values[key], creds):
                        c.error(where, f"--{key} points into credentials that "
                                "LoadCredential does not provide")
                for cred in settings.get("LoadCredential", []):
                    name = cred.split(":", 1)[0]
                    if not any(v.endswith("/" + name) for v in values.values()):
                        c.error(where, f"LoadCredential {name} is never used")
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("note: no systemd-analyze, unit verification skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        unit = os.path.join(tmp, "recsys-server.service")
        with open(unit, "w") as f:
            f.write(text.replace("/usr/local/bin/recsys-server", c.bins["recsys-server"]))
        r = subprocess.run([analyze, "verify", unit], capture_output=True, text=True)
        out = (r.stdout + r.stderr).strip()
        if r.returncode != 0 or out:
            c.error(where, f"systemd-analyze verify: {out}")
        r = subprocess.run([analyze, "security", "--offline=true", unit],
                           capture_output=True, text=True)
        m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout + r.stderr)
        if m is None:
            print("note: systemd-analyze security gave no score")
        elif float(m.group(1)) >= 2.0:
            c.error(where, f"systemd-analyze security exposure {m.group(1)} "
                    "(want < 2.0, \"OK\")")
        else:
            print(f"systemd-analyze security exposure: {m.group(1)}")


def self_test(c):
    """The checker itself notices a wrong flag name, a bad value, a dash in a
    flag file and a missing file."""
    saved = list(c.errors)
    planted = [
        lambda: c.check_argv("self", ["recsys-server", "--no-such-flag=1"], {}),
        lambda: c.check_argv("self", ["sh", "-c",
                                      "true && recsys-client --timeout=abc health"], {}),
        lambda: c.check_flagfile("self", "recsys-server", "--data-dir=/x\n"),
        lambda: c.check_repo_paths("self", "COPY scripts/no-such-script.sh"),
    ]
    missed = 0
    for plant in planted:
        c.errors = []
        plant()
        missed += not c.errors
    c.errors = saved
    if missed:
        c.error("self-test", f"the checker missed {missed} of {len(planted)} "
                "planted problems")


def main():
    ap = argparse.ArgumentParser()
    for a in ("--source", "--build", "--server", "--client", "--trainer"):
        ap.add_argument(a, required=True)
    # Binaries built with a sanitizer link its runtime, which no image ships.
    ap.add_argument("--sanitized", action="store_true")
    args = ap.parse_args()
    c = Checker(args)
    # Flag files shipped as files, by binary and file name.
    flagfiles = {}
    for f in glob.glob(c.path("deploy/**/*.flags"), recursive=True):
        binary = os.path.basename(f)[:-len(".flags")]
        if binary not in BINARIES:
            c.error(os.path.relpath(f, c.source), "flag files are named <binary>.flags")
            continue
        values = c.check_flagfile(os.path.relpath(f, c.source), binary, open(f).read())
        flagfiles.setdefault(binary, {})[os.path.basename(f)] = values
    docker = check_dockerfile(c, flagfiles)
    if args.sanitized:
        print("the binaries are built with a sanitizer: their shared libraries "
              "are not checked against the runtime image")
    else:
        check_runtime_libraries(c, docker["runtime_packages"])
    check_compose(c, flagfiles, docker)
    check_kubernetes(c, flagfiles)
    check_systemd(c, flagfiles)
    self_test(c)
    if c.errors:
        print("deploy/ is inconsistent:")
        for e in c.errors:
            print("  " + e)
        return 1
    print(f"deploy/ consistent: {c.checked_commands} command lines checked "
          "against the binaries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
