"""The mapping stage: DigiLevering messages → NL GOV CloudEvents, by declarative YAML files.

    types.py     Levering (a parsed message), MappingError, NoMatchingMapping
    model.py     the checked, typed form of a mapping file
    loader.py    YAML → model; every check happens here, once (file:line:column errors)
    engine.py    MappingSet: load a folder, map (and explain) a message, list the event types
    check.py     `digibridge check`: every file, and every sample against its golden events
    _rules.py    a rule compiled once into what makes its events (match, attributes, both forms)
    _values.py   value specs compiled once into closures (XPath, conversion, lookup, errors)
    _xpath.py    XPath 1.0 only: checked and compiled once
    _fastpath.py child paths and comparisons of them, evaluated without lxml's XPath
    _convert.py  typed conversions (lo-date, datetime, integer, ...)
    _schema.py   JSON Schema of each type's data, derived from its rule
    _yaml.py     YAML with positions

The format is documented in docs/mappings.md.
"""
