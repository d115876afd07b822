import gc

from shared.heap import freeze_startup_heap


def tracked(obj: object, generation: int | None = None) -> bool:
    return any(o is obj for o in gc.get_objects(generation=generation))


def test_objects_alive_at_startup_leave_the_collectors_generations_and_later_ones_do_not():
    startup_object = [["built at startup"]]
    gc.unfreeze()
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        assert not tracked(startup_object), "a frozen object is outside the generations the collector scans"
        later = [["built after startup"]]
        assert tracked(later, generation=0)
    finally:
        gc.unfreeze()
