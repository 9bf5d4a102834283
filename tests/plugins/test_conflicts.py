"""Two plugins offering one id: the one registered last wins, and `describe()` says so."""
from headrace.core.hookspecs import hookimpl
from headrace.core.languages import Language, LanguageCatalog
from headrace.core.plugins import build_registry
from headrace.core.resource_types import ResourceType, ResourceTypeCatalog


class LoudBash(Language):
    id = "bash"


class Replacer:
    @hookimpl
    def headrace_languages(self):
        return [LoudBash()]

    @hookimpl
    def headrace_resource_types(self):
        return [ResourceType("smtp", {"type": "object"}, "a looser smtp")]


def test_a_later_plugin_replaces_an_id_and_the_report_names_both():
    reg = build_registry(load_entry_points=False)
    reg.pm.register(Replacer(), name="replacer")
    assert isinstance(LanguageCatalog.from_registry(reg).resolve("bash"), LoudBash)
    assert ResourceTypeCatalog.from_registry(reg).by_name["smtp"].description == "a looser smtp"
    infos = {i.name: i for i in reg.describe()}
    assert infos["headrace.plugins.languages.bash"].overridden == ["language 'bash' is replaced by replacer"]
    assert infos["headrace.plugins.resource_types"].overridden == ["resource type 'smtp' is replaced by replacer"]
    assert infos["replacer"].overridden == []
    assert all(not i.overridden for name, i in infos.items() if name not in (
        "headrace.plugins.languages.bash", "headrace.plugins.resource_types"))
