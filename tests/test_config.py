import pytest

from videoforge.config import DiTConfig, preset


def test_presets_have_dit_and_vae():
    for name in ("hunyuan-t2v-720p", "hunyuan-i2v-720p", "tiny"):
        p = preset(name)
        assert p.dit.head_dim * p.dit.heads_num == p.dit.hidden_size
        assert p.vae.latent_channels == 16
    assert preset("tiny").dit.text_states_dim == 384
    assert preset("tiny").dit.text_states_dim_2 == 384
    assert preset("hunyuan-i2v-720p").dit.i2v_condition_type == "token_replace"


def test_unknown_preset_names_choices():
    with pytest.raises(ValueError, match="hunyuan-t2v-720p"):
        preset("nope")


def test_config_round_trip():
    c = preset("hunyuan-t2v-720p").dit
    assert DiTConfig.from_dict(c.to_dict()) == c


def test_bad_rope_dims_rejected():
    with pytest.raises(ValueError, match="rope_dim_list"):
        DiTConfig(rope_dim_list=(16, 56, 50))
