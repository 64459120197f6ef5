-- Every write to the registry is announced on the channel `llama_stack_registry` as
-- "<writer's application_name>\t<kind>\t<identifier>", so that replicas holding objects in
-- memory read them again (and a writer can skip its own writes).
CREATE OR REPLACE FUNCTION llama_stack_registry_notify() RETURNS trigger AS $$
DECLARE
    origin TEXT := coalesce(current_setting('application_name', true), '');
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('llama_stack_registry', origin || E'\t' || OLD.kind || E'\t' || OLD.identifier);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('llama_stack_registry', origin || E'\t' || NEW.kind || E'\t' || NEW.identifier);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS llama_stack_registry_notify ON llama_stack_registry;
CREATE TRIGGER llama_stack_registry_notify
    AFTER INSERT OR UPDATE OR DELETE ON llama_stack_registry
    FOR EACH ROW EXECUTE FUNCTION llama_stack_registry_notify();
