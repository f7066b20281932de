package dev.eetune.data.batch;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Where a {@link BatchLoader} is: the next window is number {@code index} of epoch {@code epoch}'s order. Saved in a
 * checkpoint ({@link #toMap()} / {@link #toJson()}) and passed to {@link BatchLoader#seek} to resume exactly.
 */
public record DataPosition(long epoch, long index) {
    private static final ObjectMapper JSON = new ObjectMapper();

    public static final DataPosition START = new DataPosition(0, 0);

    public DataPosition {
        if (epoch < 0 || index < 0) throw new IllegalArgumentException("epoch and index must be >= 0, got epoch " + epoch + ", index " + index);
    }

    /** {@code {"epoch": e, "index": i}}, for a checkpoint's metadata. */
    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("epoch", epoch);
        m.put("index", index);
        return m;
    }

    /** The position of {@link #toMap()}; integral numbers of any type are accepted (JSON readers pick the type). */
    public static DataPosition fromMap(Map<String, ?> map) {
        return new DataPosition(field(map, "epoch"), field(map, "index"));
    }

    public String toJson() {
        try {
            return JSON.writeValueAsString(toMap());
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot write " + this + " as JSON", e);
        }
    }

    public static DataPosition fromJson(String json) {
        try {
            return fromMap(JSON.readValue(json, new TypeReference<Map<String, Object>>() {}));
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException("data position is not a JSON object: " + e.getOriginalMessage() + " in " + json, e);
        }
    }

    private static long field(Map<String, ?> map, String name) {
        Object v = map.get(name);
        if (!(v instanceof Number n) || n.longValue() != n.doubleValue()) {
            throw new IllegalArgumentException("data position field \"" + name + "\" must be an integer, got " + v + " in " + map);
        }
        return n.longValue();
    }
}
