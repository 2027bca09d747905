"""Modules the gate's libraries import that its cold start never runs: registered, run only when used.

Lambda bills the init phase, and a scale-out pays it on a caller's request.
Two packages the gate needs import, on their way, modules that only serve
other callers (measured with `python -X importtime`, bench/authorizer_cold.py):

* `botocore.client` imports `botocore.docs.docstring`, and with it the
  modules that render reference documentation, to give every client method
  a docstring that is built only when read (`help(client.get_item)`).
  `botocore.handlers` imports `botocore.docs.utils`, whose package
  `__init__` imports the whole service documenter.
* `cryptography.hazmat.primitives.serialization` imports its SSH key and
  certificate support (and through it ciphers, DSA, Ed25519); the gate loads
  PEM public keys only (`serialization.base`).
* `urllib3.http2` (imported by every `urllib3.connection`) takes `version`
  from `importlib.metadata`, to check the h2 package's version if HTTP/2 is
  ever switched on; importing `importlib.metadata` loads zipfile, csv and
  the distribution machinery (measured: about 5% of the gate's cold start).
* `botocore.utils` and `botocore.credentials` import `dateutil.parser` to parse
  timestamps of credentials that expire and of responses that carry them; the
  gate's environment credentials and its two operations have none. For the same
  timestamps botocore takes the classes `tzutc` and `tzlocal` from `dateutil.tz`,
  whose import brings `six` and dateutil's time zone modules (about 2% of a cold
  start's instructions).
* `subprocess` (botocore's credential_process provider runs a command; it takes
  `subprocess.Popen` as a default argument at import) and `getpass` (botocore's
  assume-role provider prompts for an MFA code; `getpass.getpass` is a default
  argument too): neither the environment credentials nor the gate run a process
  or prompt.

* The modules in `OTHER_PATHS`, each with the path that uses it: imported as
  modules by the stdlib, urllib3, botocore and cryptography on the gate's way,
  used only on paths the gate's cold start never takes (an exception's
  traceback, a waiter, adaptive retries, RS256, a non-ASCII host, an
  ~/.aws/config file...). `locale` builds its tables of locale aliases at
  import; the twenty from traceback to cryptography's `_serialization` are
  about 3.5% of a cold start's instructions together. `zipfile` (with bz2 and
  lzma) is imported on Lambda's own path rather than the local benchmark's:
  the endpoint there is HTTPS, and certifi's `where()`, which botocore asks for
  the CA bundle when it first sends, imports importlib's resource readers, which
  import zipfile for packages imported from a zip (about 1.3% of a cold start's
  instructions: `where()` costs 9 M of them with it, 3 M without).

`defer_heavy_imports()` registers those modules in `sys.modules` as the real
module objects (their spec, `__path__`, `__file__`) whose code has not run
yet: it runs, into the same object, when a name the module does not hold yet
is looked up. botocore's docstring classes get stand-ins that render through
the real ones, so a docstring read later is the one botocore would have
written; the functions other modules take by name at import
(`importlib.metadata.version`, `dateutil.parser.parse`, `subprocess.Popen`,
`getpass.getpass`) get stand-ins that run the module and call its own, and the
classes taken so (`tzutc`, `tzlocal`) stand-ins that make the real class's instances
and answer `isinstance` and `issubclass` with it. `from module import *` runs the
module too, before it copies the names. Nothing is patched: the code that runs is the packages' own, later.
On a botocore or cryptography laid out otherwise (a module missing or moved),
a deferral does nothing and everything loads as usual.

Call it before anything imports botocore or cryptography, or they are loaded already.
"""

import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any, SupportsIndex

BOTOCORE_DOCS = "botocore.docs"
BOTOCORE_DOCSTRING = "botocore.docs.docstring"
# What botocore.client and botocore.waiter take from botocore.docs.docstring.
DOCSTRING_CLASSES = ("ClientMethodDocstring", "PaginatorDocstring", "WaiterDocstring")
CRYPTOGRAPHY_SERIALIZATION = "cryptography.hazmat.primitives.serialization"
# Functions other modules import by name while the module is deferred: {module: names}.
CALLED_THROUGH = {
    "importlib.metadata": ("version",),
    "dateutil.parser": ("parse",),
    "subprocess": ("Popen",),
    "getpass": ("getpass",),
}
# Classes other modules import by name while the module is deferred, and only call or test against:
# {module: names}. botocore.compat, utils, credentials and tokens take `tzutc` and `tzlocal` to make
# timestamps of expiring credentials and tokens and to parse responses' timestamps; the gate's
# environment credentials and its two operations carry none.
MADE_THROUGH = {
    "dateutil.tz": ("tzutc", "tzlocal"),
}
# Imported as modules (`import x`, `from package import x`) on the gate's way and used only on paths it never takes:
# {module: the path that uses it}. Each runs, as itself, the first time that path asks it for a name.
OTHER_PATHS = {
    "locale": "a locale's name or conventions (calendar's and subprocess's callers, both imported by botocore)",
    "configparser": "botocore reading ~/.aws/config (Lambda has none)",
    "jmespath": "botocore's waiters, paginators and endpoint parameters taken from an operation's input",
    "shlex": "botocore splitting a credential_process command or a config key",
    "shutil": "tempfile deleting a temporary directory (with bz2 and lzma)",
    "traceback": "formatting an exception (logging.exception), with linecache, tokenize and textwrap",
    "linecache": "reading source lines for a traceback or a warning",
    "tokenize": "reading a source file (linecache, inspect.getsource)",
    "textwrap": "indenting an exception group's traceback",
    "calendar": "timestamps of expiring credentials and of mail dates",
    "selectors": "subprocess and socket.sendfile",
    "stringprep": "a host name that is not ASCII (IDNA nameprep)",
    "ntpath": "pathlib's Windows paths",
    "importlib.machinery": "inspect finding a module's source file",
    "mimetypes": "urllib3's multipart form fields",
    "zipfile": "reading a zip archive: importlib.metadata, a package imported from one (certifi's `where()`, "
    "which botocore asks for an HTTPS endpoint's CA bundle, imports importlib's readers, and they zipfile)",
    "email.header": "a header holding undecodable bytes (email's compat32 policy)",
    "xml.etree.ElementPath": "searching parsed XML (botocore's XML protocols, not DynamoDB's JSON)",
    "botocore.waiter": "client.get_waiter",
    "botocore.retries.adaptive": "retry mode adaptive, with its token bucket and throttling detector",
    "botocore.retries.bucket": "retry mode adaptive",
    "botocore.retries.throttling": "retry mode adaptive",
    "botocore.translate": "translating a legacy retry configuration",
    "botocore.monitoring": "client-side monitoring (AWS_CSM_ENABLED)",
    "cryptography.hazmat.primitives.asymmetric.padding": "verifying RS256 (PKCS #1 v1.5) tokens",
    "cryptography.hazmat.primitives._serialization": "writing a key out (public_bytes)",
}


class Run:
    """A deferred module's `_run_deferred`: runs its code into the registered module object, once.

    Once: a module may define a `__getattr__` of its own (`urllib.parse` does), so the
    stand-in's being gone does not tell that the code ran. A second thread waits for the
    first one's run to finish.
    """

    def __init__(self, module: ModuleType, loader: Any) -> None:
        self.module, self.loader = module, loader
        self.pending = True
        self.lock = threading.RLock()

    def __call__(self) -> None:
        with self.lock:
            if self.pending:
                self.pending = False
                del self.module.__dict__["__getattr__"]  # the stand-in: the module's own code may define one
                self.loader.exec_module(self.module)


def defer_module(name: str, stand_ins: dict[str, Any] | None = None) -> ModuleType | None:
    """Register module `name` without running its code until a name it does not hold is looked up.

    Dunder names aside: the import system probes those (`__path__` of a
    module, `__spec__`) and gets an AttributeError as for any module; but
    `__all__` runs it, as `from name import *` asks for it before it copies names.
    When the code runs, its own definitions replace `stand_ins`. Returns the
    module, or None when it is imported already or cannot be found.
    """
    if name in sys.modules:
        return None
    spec = importlib.util.find_spec(name)  # imports its parent packages, which may import it
    if spec is None or spec.loader is None or name in sys.modules:
        return None
    module = importlib.util.module_from_spec(spec)
    load = Run(module, spec.loader)

    def __getattr__(attribute: str) -> Any:
        # `from name import *` asks for __all__ first: that runs the module.
        if attribute.startswith("__") and attribute.endswith("__") and attribute != "__all__":
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}")
        load()
        return getattr(module, attribute)

    module.__dict__.update(stand_ins or {})
    module.__dict__["__getattr__"] = __getattr__
    module.__dict__["_run_deferred"] = load
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:  # as the import system does: `import botocore.docs` then finds botocore.docs
        setattr(sys.modules[parent], child, module)
    return module


def is_deferred(name: str) -> bool:
    """True while module `name` is registered but its code has not run."""
    module = sys.modules.get(name)
    load = vars(module).get("_run_deferred") if module is not None else None
    return isinstance(load, Run) and load.pending


def own(module_name: str, name: str) -> Any:
    """Module `module_name`'s own `name`: runs the module's code first if it is deferred (a stand-in's way through)."""
    module = sys.modules[module_name]
    vars(module).get("_run_deferred", lambda: None)()
    return getattr(module, name)


class DeferredDocstring(str):
    """Stands in for one of botocore's LazyLoadedDocstring classes: renders through the real one when read."""

    real_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "DeferredDocstring":
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._args, self._kwargs = args, kwargs
        self._real: object = None

    def _render(self) -> str:
        if self._real is None:
            self._real = own(BOTOCORE_DOCSTRING, self.real_name)(*self._args, **self._kwargs)
        return str(self._real)

    def expandtabs(self, tabsize: SupportsIndex = 8) -> str:  # what help() reads (see botocore's LazyLoadedDocstring)
        return self._render().expandtabs(tabsize)

    def __str__(self) -> str:
        return self._render()

    __repr__ = __str__


def defer_botocore_docs() -> None:
    if "botocore.client" in sys.modules or defer_module(BOTOCORE_DOCS) is None:
        return  # loaded already (or no such package): nothing to save
    stand_ins = {name: type(name, (DeferredDocstring,), {"real_name": name}) for name in DOCSTRING_CLASSES}
    defer_module(BOTOCORE_DOCSTRING, stand_ins)


def calling_through(module_name: str, function_name: str) -> Any:
    """A stand-in for `module_name.function_name`: runs the deferred module, then calls the module's own."""

    def stand_in(*args: Any, **kwargs: Any) -> Any:
        return own(module_name, function_name)(*args, **kwargs)

    stand_in.__name__ = stand_in.__qualname__ = function_name
    return stand_in


def defer_called_through(name: str) -> ModuleType | None:
    return defer_module(name, {function: calling_through(name, function) for function in CALLED_THROUGH[name]})


class MadeThrough:
    """A stand-in for class `module_name.class_name`: runs the deferred module, then acts with the module's own class.

    Calling it makes an instance of the real class; `isinstance` and `issubclass` ask the real
    class, and a class statement that names it as a base gets the real class instead
    (`__mro_entries__`). Only `type(name, (stand_in,), ...)`, which takes no such replacement, refuses it.
    """

    def __init__(self, module_name: str, class_name: str) -> None:
        self.module_name = module_name
        self.__name__ = self.__qualname__ = class_name

    def real(self) -> type:
        real: type = own(self.module_name, self.__name__)
        return real

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.real()(*args, **kwargs)

    def __instancecheck__(self, instance: object) -> bool:
        return isinstance(instance, self.real())

    def __subclasscheck__(self, subclass: type) -> bool:
        return issubclass(subclass, self.real())

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type]:
        return (self.real(),)

    def __getattr__(self, attribute: str) -> Any:  # the class's own attributes (not probes of this object)
        if attribute.startswith("__") and attribute.endswith("__"):
            raise AttributeError(attribute)
        return getattr(self.real(), attribute)

    def __repr__(self) -> str:
        return f"<stand-in for class {self.module_name}.{self.__name__}>"


def defer_made_through(name: str) -> ModuleType | None:
    return defer_module(name, {cls: MadeThrough(name, cls) for cls in MADE_THROUGH[name]})


def defer_heavy_imports() -> None:
    """Defer the modules the module docstring lists: the modules in OTHER_PATHS (first: finding
    the others imports their parent packages, botocore's imports logging, and logging traceback),
    botocore's docs machinery, cryptography's serialization package, the modules in CALLED_THROUGH and MADE_THROUGH."""
    for name in OTHER_PATHS:
        defer_module(name)
    defer_botocore_docs()
    defer_module(CRYPTOGRAPHY_SERIALIZATION)
    for name in CALLED_THROUGH:
        defer_called_through(name)
    for name in MADE_THROUGH:
        defer_made_through(name)
