package dev.eetune.model.io;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * Typed access to the fields of a JSON object read from a user's file, with errors naming the file (and the object
 * within it: {@code where}), the field and the value found.
 */
public record JsonFields(String where, JsonNode node) {
    public int requiredInt(String name) { return intValue(name, required(name)); }

    public int optionalInt(String name, int fallback) {
        JsonNode v = optional(name);
        return v == null ? fallback : intValue(name, v);
    }

    public long requiredLong(String name) {
        JsonNode v = required(name);
        if (!v.isIntegralNumber() || !v.canConvertToLong()) throw new IllegalArgumentException(where + ": field '" + name + "' must be an integer, got " + v);
        return v.asLong();
    }

    public float requiredFloat(String name) { return floatValue(name, required(name)); }

    public float optionalFloat(String name, float fallback) {
        JsonNode v = optional(name);
        return v == null ? fallback : floatValue(name, v);
    }

    public boolean optionalBoolean(String name, boolean fallback) {
        JsonNode v = optional(name);
        if (v != null && !v.isBoolean()) throw new IllegalArgumentException(where + ": field '" + name + "' must be true or false, got " + v);
        return v == null ? fallback : v.asBoolean();
    }

    public String requiredText(String name) {
        JsonNode v = required(name);
        if (!v.isTextual()) throw new IllegalArgumentException(where + ": field '" + name + "' must be a string, got " + v);
        return v.asText();
    }

    /** The object field {@code name}, its errors naming it after {@link #where}. */
    public JsonFields requiredObject(String name) {
        JsonNode v = required(name);
        if (!v.isObject()) throw new IllegalArgumentException(where + ": field '" + name + "' must be an object, got " + v);
        return new JsonFields(where + ": " + name, v);
    }

    public JsonNode requiredArray(String name) {
        JsonNode v = required(name);
        if (!v.isArray()) throw new IllegalArgumentException(where + ": field '" + name + "' must be an array, got " + v);
        return v;
    }

    private JsonNode required(String name) {
        JsonNode v = optional(name);
        if (v == null) throw new IllegalArgumentException(where + ": field '" + name + "' is missing");
        return v;
    }

    /** The field, or null when it is absent or JSON null. */
    private JsonNode optional(String name) {
        JsonNode v = node.path(name);
        return v.isMissingNode() || v.isNull() ? null : v;
    }

    private int intValue(String name, JsonNode v) {
        if (!v.isIntegralNumber() || !v.canConvertToInt()) throw new IllegalArgumentException(where + ": field '" + name + "' must be an integer, got " + v);
        return v.asInt();
    }

    private float floatValue(String name, JsonNode v) {
        if (!v.isNumber()) throw new IllegalArgumentException(where + ": field '" + name + "' must be a number, got " + v);
        return (float) v.asDouble();
    }
}
