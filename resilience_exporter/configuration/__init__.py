"""The configuration room: the YAML file (`yamlfile`: positions, errors that name file, line
and key) validated once by `loader` into typed, frozen objects — targets (`targets`), `/probe`
modules (`modules`) — from the building blocks every model shares (`models`, `secrets`)."""
